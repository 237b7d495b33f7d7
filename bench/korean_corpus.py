"""More real Korean text for bench/korean_vocab.py (`--corpus`): read the folder `make korean-corpus` fills, split
off a held-out part, and measure the gain in tokens per syllable with that much more training text."""

from __future__ import annotations

import random
import sys
from html.parser import HTMLParser
from pathlib import Path

CORPUS = Path.home() / ".cache" / "kotune" / "korean_corpus"  # `make korean-corpus`
CORPUS_NOTE = (
    "The corpus (`make korean-corpus`, fetched into ~/.cache/kotune/korean_corpus, never committed; "
    "bench/korean_corpus_sources.py lists every file and the commit it is pinned to): KoNLPy 0.6.0's bundled corpora "
    "from PyPI (kolaw: the Constitution; kobill: 10 National Assembly bills); the Korean documentation of three Debian "
    "packages (libreoffice-help-ko, gimp-help-ko, debian-faq-ko; HTML, each block element a text); and public Korean "
    "datasets from GitHub: KorQuAD 1.0 dev (Wikipedia paragraphs), KLUE dev sets (news and Wikipedia sentences), "
    "KorNLI XNLI and KorSTS (translated sentences of many genres), the Korean side of the Korean-English news "
    "parallel corpus (dev/test), KMOU's NER corpus (news sentences) and six months of the Blue House petitions "
    "archive (citizens' prose on law, policy and daily life). NSMC's movie reviews were tried and left out: slang "
    "without spacing, 4x the rest, and they made the held-out gain smaller. The held-out split is 5% of the files, "
    "seeded, whole files (a petition, a Wikipedia article, 100-200 sentences of a dataset); paragraphs also found in "
    "a training file are dropped. For scale, issue #26's reference figures on legal text put Gemma-3 (262K tokens) "
    "at 0.68 tokens per syllable against Llama-3's 0.92, 26% fewer.")

class Blocks(HTMLParser):
    """The text of each block element of an HTML page (script and style skipped), whitespace collapsed."""

    BREAKS = {"p", "div", "li", "td", "th", "dt", "dd", "br", "tr", "pre", "title", "h1", "h2", "h3", "h4", "h5"}

    def __init__(self):
        super().__init__()
        self.texts, self.parts, self.skip = [], [], 0

    def handle_starttag(self, tag, attrs):
        self.skip += tag in ("script", "style")
        self.flush(tag)

    def handle_endtag(self, tag):
        self.skip -= tag in ("script", "style")
        self.flush(tag)

    def handle_data(self, data):
        self.parts += [] if self.skip else [data]

    def flush(self, tag: str = "p"):
        if tag in self.BREAKS and "".join(self.parts).strip():
            self.texts.append("".join(self.parts))
        self.parts = self.parts if tag not in self.BREAKS else []


def corpus_split(folder: Path, exclude: list[str], share: float = 0.05) -> tuple[list[str], list[str], int]:
    """The paragraphs holding Hangul of a corpus folder (.txt: a text per line; .html: each block element), NFC and
    deduplicated; a seeded `share` of the files held out whole (a page's paragraphs stay together), held-out
    paragraphs that also occur in a training file dropped, and `exclude` (the bench's held-out text) kept out of
    training. Returns (training texts, held-out texts, files)."""
    from kotune.data.report import HANGUL
    from kotune.data.text_files import nfc

    files = sorted(p for p in folder.rglob("*") if p.suffix in (".txt", ".html") and p.is_file())
    if not files:
        sys.exit(f"--corpus {folder}: no .txt or .html files; run `make korean-corpus`")
    held_files = set(random.Random(0).sample(range(len(files)), max(1, int(share * len(files)))))
    train, held = {}, {}
    for i, path in enumerate(files):
        text = path.read_text(encoding="utf-8", errors="replace")
        if path.suffix == ".html":
            page = Blocks()
            page.feed(text)
            page.flush()
        for t in (page.texts if path.suffix == ".html" else text.splitlines()):
            t = nfc(" ".join(t.split()))
            if HANGUL.search(t):
                (held if i in held_files else train)[t] = None
    train = {t: None for t in train if t not in set(exclude)}
    return list(train), [t for t in held if t not in train], len(files)


def corpus_curve(tok, train: list[str], corpus: tuple, held: list[str], opts) -> list[tuple]:
    """(syllables of training text, new tokens, change on the bench's held-out text, change on the corpus's) with
    the bench's training text alone at --size, then with all of the corpus at each of --corpus-sizes."""
    from kotune.data.report import HANGUL
    from kotune.vocab.extend import extend_tokenizer
    from kotune.vocab.learn import learn_tokens
    from kotune.vocab.measure import measure_texts

    points = []
    for texts, size in [(train, opts.size)] + [(train + corpus[0], n) for n in opts.corpus_sizes]:
        new = extend_tokenizer(tok, learn_tokens(tok, texts, size, opts.min_freq).tokens)
        points.append((sum(len(HANGUL.findall(t)) for t in texts), len(new) - len(tok),
                       measure_texts(tok, new, held).change, measure_texts(tok, new, corpus[1]).change))
    return points


def corpus_table(rows: list[dict], corpus: tuple, opts) -> str:
    pct = lambda c: f"{100 * c:+.1f}%"  # noqa: E731
    heads = [f"bench text only ({rows[0]['corpus'][0][0]:,} syllables), --size {opts.size:,}"] + \
        [f"+ the corpus, --size {n:,}" for n in opts.corpus_sizes]
    lines = [f"More training text (--corpus: {corpus[2]:,} files, {corpus[3]:,} training syllables, held-out split "
             f"{corpus[4]:,} syllables); change in tokens per syllable on the bench's held-out text / on the "
             "corpus's held-out split (new tokens):", "",
             "| base | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]
    for r in rows:
        lines.append(f"| {r['base']} | " + " | ".join(f"**{pct(bench)}** / {pct(own)} ({new:,})"
                                                    for _, new, bench, own in r["corpus"]) + " |")
    return "\n".join(lines)
