"""`kotune vocab build|extend|report`: EEVE-style Korean vocabulary extension of a foreign base.

    kotune vocab build  --base TOKENIZER_DIR --corpus FILE [FILE ...] --size N [--min-freq K] [--hangul-only]
                        --out tokens.tsv
    kotune vocab extend --base MODEL_DIR --tokens tokens.tsv --out OUT_DIR [--init eeve|mean] [--overwrite]
    kotune vocab report --base DIR --new DIR --text HELD_OUT [...] [--config CONFIG.yaml] [--json]

`build` learns new Korean tokens as BPE merges on top of the base's own segmentation (`kotune.vocab.learn`);
`extend` writes a new folder whose tokenizer keeps every old id and appends the new tokens (`kotune.vocab.extend`),
with the model's new embedding rows when the base holds a model; `report` measures tokens per Hangul syllable
before and after on held-out text, and the change in training tokens for a config's data.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from kotune.errors import KotuneError

logger = logging.getLogger(__name__)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kotune vocab", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    build = sub.add_parser("build", help="learn new Korean tokens for a base from a corpus (a TSV in merge order)")
    build.add_argument("--base", required=True, help="the base's model or tokenizer dir")
    build.add_argument("--corpus", required=True, nargs="+", help=".txt (a text per line) or .jsonl/.json files")
    build.add_argument("--size", required=True, type=int, help="how many new tokens at most (EEVE added 8,960)")
    build.add_argument("--min-freq", type=int, default=2,
                       help="drop tokens seen fewer times in the corpus (EEVE drops rare tokens); default 2")
    build.add_argument("--hangul-only", action="store_true",
                       help="only tokens made of Hangul syllables (after an optional leading space); by default a "
                            "token holds at least one syllable and may hold punctuation or digits")
    build.add_argument("--out", required=True, help="the token list to write (TSV)")
    build.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    extend = sub.add_parser("extend", help="write a base's tokenizer (and model) with the new tokens appended")
    extend.add_argument("--base", required=True, help="the base model dir (or a tokenizer-only dir, or a Hub id)")
    extend.add_argument("--tokens", required=True, help="the token list `kotune vocab build` wrote")
    extend.add_argument("--out", required=True, help="a new or empty folder, apart from --base")
    extend.add_argument("--init", choices=("eeve", "mean"), default="eeve",
                        help="new rows: eeve = input row the mean of the old tokens' rows, output row the first "
                             "one's; mean = the mean for both")
    extend.add_argument("--overwrite", action="store_true",
                        help="replace an --out that an earlier `kotune vocab extend` wrote (it holds "
                             "kotune_vocab.json)")
    report = sub.add_parser("report", help="tokens per Hangul syllable before/after, and the change for a config")
    report.add_argument("--base", required=True, help="the base's tokenizer dir")
    report.add_argument("--new", required=True, help="the extended dir `kotune vocab extend` wrote")
    report.add_argument("--text", required=True, nargs="+", help="held-out text: .txt or .jsonl/.json files")
    report.add_argument("--config", help="a training config: the expected change in its data's tokens")
    report.add_argument("--stage", help="read --config as this stage's config (default: the first that accepts it)")
    report.add_argument("--json", action="store_true", help="print the numbers as JSON")
    return parser.parse_args(argv)


def run_build(args) -> int:
    from kotune.vocab.corpus import read_texts
    from kotune.vocab.extend import load_base_tokenizer
    from kotune.vocab.learn import learn_tokens
    from kotune.vocab.token_file import write_tokens

    out = Path(args.out)
    problems = []
    if args.size < 1:
        problems.append(f"--size {args.size}: give at least 1 new token")
    if args.min_freq < 1:
        problems.append(f"--min-freq {args.min_freq}: give 1 or more")
    if out.exists() and not args.overwrite:
        problems.append(f"--out '{out}' exists; pass --overwrite to replace it")
    if out.is_dir():
        problems.append(f"--out '{out}' is a folder; give the token list's file name")
    if any(out.resolve() == Path(c).resolve() for c in args.corpus):
        problems.append(f"--out '{out}' is one of the corpus files")
    if problems:
        raise KotuneError("; ".join(problems))
    texts = read_texts(args.corpus)
    learned = learn_tokens(load_base_tokenizer(args.base), texts, args.size, args.min_freq, args.hangul_only)
    comment = (f"# kotune vocab build: base={args.base} kind={learned.kind} corpus={' '.join(args.corpus)} "
               f"size={args.size} min_freq={args.min_freq} hangul_only={args.hangul_only}; corpus tokens "
               f"{learned.corpus_tokens_before} -> {learned.corpus_tokens_after}")
    write_tokens(out, learned.tokens, comment)
    saved = learned.corpus_tokens_before - learned.corpus_tokens_after
    reused = len(learned.tokens) - learned.fresh
    print(f"{learned.fresh} new tokens ({learned.method}; stopped: {learned.stopped}) from {len(texts)} texts, "
          f"{learned.words} distinct words" + (f"; {reused} more merges end in entries the base has" if reused else ""))
    print(f"corpus tokens: {learned.corpus_tokens_before} -> {learned.corpus_tokens_after} "
          f"({-100 * saved / max(learned.corpus_tokens_before, 1):+.1f}%)")
    print("most frequent: " + ", ".join(repr(t.text) for t in learned.tokens[:12]))
    print(f"written: {out}")
    return 0


def run_extend(args) -> int:
    from kotune.vocab.extend_dir import write_extension

    info = write_extension(args.base, args.tokens, args.out, args.init, args.overwrite)
    rows = "model rows initialised" if info.get("model") else info.get("note", "tokenizer only (no model in --base)")
    print(f"{info['old_vocab_size']} -> {info['new_vocab_size']} tokens ({info['new_tokens']} new, ids "
          f"{info['new_ids'][0]}-{info['new_ids'][1]}); {info['kind']}; {rows}")
    print(f"written: {args.out}")
    return 0


def run_report(args) -> int:
    from kotune.vocab.corpus import read_texts
    from kotune.vocab.extend import load_base_tokenizer
    from kotune.vocab.measure import format_config, format_measure, measure_config, measure_texts

    base, new = load_base_tokenizer(args.base), load_base_tokenizer(args.new)
    if len(new) <= len(base) or any(new.convert_ids_to_tokens(i) != base.convert_ids_to_tokens(i)
                                    for i in range(0, len(base), max(1, len(base) // 997))):
        logger.warning("vocab report: --new (%d tokens) does not look like an extension of --base (%d tokens)",
                       len(new), len(base))
    result = {"text": measure_texts(base, new, read_texts(args.text, "--text")).as_dict()}
    if args.config:
        result["config"] = measure_config(base, new, [args.config], args.stage)
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return 0
    from kotune.vocab.measure import TextMeasure

    text = {k: v for k, v in result["text"].items() if k != "change"}
    print(format_measure(f"held-out text ({' '.join(args.text)})", TextMeasure(**text)))
    if "config" in result:
        print(format_config(result["config"]))
    return 0


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    from kotune.logs import setup_logging

    setup_logging()
    return {"build": run_build, "extend": run_extend, "report": run_report}[args.action](args)
