"""The data report: what a config will train on, before any GPU time is spent (`kotune data CONFIG`).

Prints and writes (JSON + PNG histogram): rows per source/task, dropped rows by reason, token-length
percentiles, tokens per Hangul syllable, truncation, and the useful-token fraction of padded batches, padding-free
packing and best-fit-decreasing bins.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

from kotune.data.packing import useful_fraction

logger = logging.getLogger(__name__)
HANGUL = re.compile(r"[\uac00-\ud7a3]")
LETTER = re.compile(r"[^\W\d_]")  # letters of any script (Hangul, Latin, Han, ...)


def hangul_counts(text: str) -> tuple[int, int]:
    """(Hangul syllables, letters of any script) in `text`; digits, spaces and punctuation are neither.

    >>> hangul_counts("서울은 Seoul, 1394년")
    (4, 9)
    """
    return len(HANGUL.findall(text)), len(LETTER.findall(text))


def percentiles(values: list[int], qs=(50, 90, 99)) -> dict[str, int]:
    ordered = sorted(values)
    out = {}
    for q in qs:
        k = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))
        out[f"p{q}"] = ordered[k]
    out["max"] = ordered[-1]
    out["mean"] = round(sum(ordered) / len(ordered), 1)
    return out


def tokens_per_syllable(tokenizer, dataset, limit: int = 2000) -> float | None:
    tokens = syllables = 0
    for row in dataset.select(range(min(limit, len(dataset)))):
        text = tokenizer.decode(row["input_ids"], skip_special_tokens=True)
        n = len(HANGUL.findall(text))
        if n:
            syllables += n
            tokens += len(row["input_ids"])
    return round(tokens / syllables, 3) if syllables else None


def bfd_fill(lengths: list[int], max_length: int) -> tuple[int, float]:
    """(bins, useful fraction of bins × max_length) for best-fit-decreasing packing."""
    bins: list[int] = []
    for n in sorted(lengths, reverse=True):
        best = None
        for i, used in enumerate(bins):
            if used + n <= max_length and (best is None or used > bins[best]):
                best = i
        if best is None:
            bins.append(n)
        else:
            bins[best] += n
    return len(bins), sum(lengths) / (len(bins) * max_length)


def build_report(cfg, tokenizer, variants, sources: dict) -> dict:
    dataset = variants[0]
    lengths = [len(ids) for ids in dataset["input_ids"]]
    answer = [sum(1 for t in lab if t != -100) for lab in dataset["labels"]]
    args = cfg.training
    used = sum(s["used"] for s in sources.values())
    truncated = sum(s.get("truncated", 0) for s in sources.values())
    report = {
        "examples": len(dataset),
        "epoch_variants": len(variants),
        "per_source": sources,
        "tokens": {"total": sum(lengths), "answer": sum(answer), "length": percentiles(lengths)},
        "tokens_per_hangul_syllable": tokens_per_syllable(tokenizer, dataset),
        "truncated_percent": round(100 * truncated / used, 2) if used else 0.0,
        "useful_token_fraction": {
            "padded": round(useful_fraction(lengths, args.per_device_train_batch_size, "padded"), 4),
            "padding_free": 1.0,
        },
    }
    if args.max_length:
        bins, fill = bfd_fill(lengths, args.max_length)
        report["useful_token_fraction"]["bfd_bins"] = round(fill, 4)
        report["bfd_bins"] = bins
    return report


def format_pt_report(report: dict) -> str:
    """The pt stage's data report: documents and tokens per source, then the corpus (`pt_dataset.build_pt_data`)."""
    lines = [f"{'source':48s} {'format':8s} {'avail':>7s} {'docs':>7s} {'tokens':>10s}  dropped"]
    for sid, s in report["per_source"].items():
        dropped = ", ".join(f"{k}: {v}" for k, v in s["dropped"].items()) or "-"
        lines.append(f"{sid[-48:]:48s} {s['format']:8s} {s['available']:7d} {s['used']:7d} {s.get('tokens', 0):10d}  "
                     f"{dropped}")
        if s.get("nfc_normalized"):
            lines.append(f"{'':48s}   NFC-normalized: {s['nfc_normalized']} documents")
        if s.get("eval"):
            lines.append(f"{'':48s}   eval: {s['eval']['used']} documents")
    length = report["document_tokens"]
    lines += [
        f"documents: {report['documents']}  (eval documents: {report.get('eval', {}).get('documents', 0)})",
        f"tokens: {report['tokens']} (EOS after each document); per document p50 {length.get('p50')} "
        f"p90 {length.get('p90')} max {length.get('max')}",
        f"tokens per Hangul syllable: {report['tokens_per_hangul_syllable']}",
        f"Hangul share of letters: {100 * report['hangul_share']:.1f}% ({report['hangul_syllables']} syllables)",
        f"documents longer than max_length {report['max_length']}: {report['documents_cut']} (cut into pieces; "
        f"{report['pieces']} pieces in all)",
    ]
    if "blocks" in report:
        lines.append(f"blocks of at most {report['max_length']} tokens: {report['blocks']}, "
                     f"{100 * report['block_fill']:.1f}% full")
    return "\n".join(lines)


def plot_lengths(lengths: list[int], path: Path, max_length: int | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.hist(lengths, bins=min(50, max(5, len(set(lengths)))), color="#4477aa")
    if max_length:
        ax.axvline(max_length, color="#cc3311", linestyle="--", label=f"max_length {max_length}")
        ax.legend()
    ax.set_xlabel("tokens per example")
    ax.set_ylabel("examples")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def format_report(report: dict) -> str:
    lines = [f"{'source':48s} {'format':22s} {'avail':>7s} {'used':>7s}  dropped"]
    for sid, s in report["per_source"].items():
        dropped = ", ".join(f"{k}: {v}" for k, v in s["dropped"].items()) or "-"
        lines.append(f"{sid[-48:]:48s} {s['format']:22s} {s['available']:7d} {s['used']:7d}  {dropped}")
        if s.get("nfc_normalized"):  # decomposed Hangul (macOS) composed: the text trained on is NFC
            lines.append(f"{'':48s}   NFC-normalized: {s['nfc_normalized']} rows")
        if s.get("split_rows"):  # a template that re-renders earlier turns: one example per assistant turn
            lines.append(f"{'':48s}   split per turn: {s['split_rows']} conversations -> "
                         f"{s['split_rows'] + s['split_examples']} examples (earlier turns as the template renders them)")
        if s.get("reasoning_dropped"):  # never silently: thinking: off, or a template that never renders it
            lines.append(f"{'':48s}   reasoning dropped: " + ", ".join(f"{k} {v} rows"
                                                                     for k, v in s["reasoning_dropped"].items()))
        if s.get("answers"):  # the label mix a labelled KIT-19 task trains on
            lines.append(f"{'':48s}   answers: " + ", ".join(f"{k} {v}" for k, v in s["answers"].items()))
        if s.get("eval"):  # rows held out (or read) for evaluation, never trained on
            held = s["eval"]
            lines.append(f"{'':48s}   eval: {held['used']} rows" + (f", dropped {held['dropped']}" if held["dropped"]
                                                                   else ""))
    t = report["tokens"]
    lines += [
        f"examples: {report['examples']}  (epoch variants: {report['epoch_variants']}; eval examples: "
        f"{report.get('eval_examples', 0)})",
        f"tokens: {t['total']} total, {t['answer']} trained; length p50 {t['length']['p50']} p90 {t['length']['p90']} "
        f"p99 {t['length']['p99']} max {t['length']['max']}",
        f"tokens per Hangul syllable: {report['tokens_per_hangul_syllable']}",
        f"truncated: {report['truncated_percent']}%",
        "useful-token fraction: " + ", ".join(f"{k} {v}" for k, v in report["useful_token_fraction"].items()),
    ]
    return "\n".join(lines)
