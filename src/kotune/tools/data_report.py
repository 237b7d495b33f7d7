"""`kotune data CONFIG [--out DIR] [--stage pt]`: what an SFT or pt config will train on, before any GPU time is spent.

Writes data_report.json and lengths.png (default: runs/data_report/<config name>) and prints the summary
(`kotune.data.report` builds it). A config whose sources are all raw text (`format: text` or .txt files) is read as
the pt stage reads it: documents, tokens, tokens per Hangul syllable, the Hangul share and the blocks.
"""

from __future__ import annotations

import json
from pathlib import Path

from kotune.config.loading import read_config
from kotune.config.validation import build_config, check_config
from kotune.errors import KotuneError

USAGE = ("usage: kotune data CONFIG.yaml [--out DIR] [--stage sft|pt] [--key=value ...]\n\nWrites data_report.json "
         "and lengths.png (default: runs/data_report/<config name>) and prints the summary. --stage: the stage whose "
         "data to report (default: pt when every source is raw text, else sft).")
STAGES = ("sft", "pt")


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    options = {}
    for name in ("--out", "--stage"):
        if name in argv:
            i = argv.index(name)
            options[name], argv = (argv[i + 1] if i + 1 < len(argv) else ""), argv[:i] + argv[i + 2:]
    if options.get("--stage", "sft") not in STAGES:
        raise KotuneError(f"--stage {options['--stage']!r}: kotune data reports the data of {' or '.join(STAGES)}")
    return run_data_report(argv, options.get("--out"), options.get("--stage"))


def raw_text_only(raw: dict) -> bool:
    """Whether every source of a raw config is raw text: `format: text`, or a .txt file without a format."""
    mixture = raw.get("dataset_mixture")
    sources = mixture.get("datasets") if isinstance(mixture, dict) else None
    return bool(sources) and isinstance(sources, list) and all(
        isinstance(s, dict) and (s.get("format") == "text" or (s.get("format") is None and
                                                             str(s.get("id", "")).lower().endswith(".txt")))
        for s in sources)


def run_data_report(argv: list[str], out_dir: str | None = None, stage: str | None = None) -> int:
    from kotune.data.mixture import load_all

    path, raw = read_config(argv)
    stage = stage or ("pt" if raw_text_only(raw) else "sft")
    kotune, mixture, *_, problems = check_config(raw, stage=stage)
    # The sources are read before torch and the tokenizer load, so a data mistake is reported in a second.
    loaded = None if problems else load_all(mixture, kotune.get("strict", False))
    cfg = build_config(raw, stage=stage, source=path)
    out = Path(out_dir or Path("runs") / "data_report" / Path(cfg.source).stem)
    if stage == "pt":
        return pt_data_report(cfg, loaded, out)

    from kotune.data.report import format_report, plot_lengths

    tokenizer, variants, report = sft_report(cfg, loaded)
    out.mkdir(parents=True, exist_ok=True)
    (out / "data_report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    plot_lengths([len(x) for x in variants[0]["input_ids"]], out / "lengths.png", cfg.training.max_length)
    print(format_report(report))
    print(f"written: {out / 'data_report.json'}, {out / 'lengths.png'}")
    return 0


def pt_data_report(cfg, loaded, out: Path) -> int:
    """The pt stage's data, prepared as a run prepares it (and cached for it): data_report.json, lengths.png of the
    training rows (blocks, or document pieces), and the summary."""
    from kotune.data.prepare import prepare_pt_data, pt_batching
    from kotune.data.report import format_pt_report, plot_lengths
    from kotune.models.loading import load_model_config, load_tokenizer

    m = cfg.model
    base_config = load_model_config(m.model_name_or_path, m.trust_remote_code, m.model_revision)
    tokenizer = load_tokenizer(m.model_name_or_path, m.trust_remote_code, m.model_revision)
    train, _, report, hit = prepare_pt_data(cfg, tokenizer, pt_batching(cfg, base_config), loaded)
    report["cache_hit"] = hit
    out.mkdir(parents=True, exist_ok=True)
    (out / "data_report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    plot_lengths([len(x) for x in train["input_ids"]], out / "lengths.png", cfg.training.max_length)
    print(format_pt_report(report))
    print(f"written: {out / 'data_report.json'}, {out / 'lengths.png'}")
    return 0


def sft_report(cfg, loaded=None) -> tuple:
    """(tokenizer with the run's chat template, tokenized variants, report) of an SFT config: the same pipeline
    as training, for `kotune data` and kotune studio's view of what the model learns."""
    from kotune.data.prepare import prepare_sft_data
    from kotune.data.prompt_formats import prepare_chat_tokenizer
    from kotune.data.report import build_report
    from kotune.models.loading import load_model_config, load_tokenizer

    m = cfg.model
    model_type = load_model_config(m.model_name_or_path, m.trust_remote_code, m.model_revision).model_type
    tokenizer = load_tokenizer(m.model_name_or_path, m.trust_remote_code, m.model_revision)
    prepare_chat_tokenizer(tokenizer, cfg, model_type, m.model_name_or_path)
    variants, eval_dataset, sources, hit = prepare_sft_data(cfg, tokenizer, loaded)
    report = build_report(cfg, tokenizer, variants, sources)
    report["cache_hit"] = hit
    report["eval_examples"] = len(eval_dataset) if eval_dataset is not None else 0
    return tokenizer, variants, report
