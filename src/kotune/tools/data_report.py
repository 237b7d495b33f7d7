"""`kotune data CONFIG [--out DIR]`: what an SFT config will train on, before any GPU time is spent.

Writes data_report.json and lengths.png (default: runs/data_report/<config name>) and prints the summary
(`kotune.data.report` builds it).
"""

from __future__ import annotations

import json
from pathlib import Path

from kotune.config.loading import read_config
from kotune.config.validation import build_config, check_config

USAGE = ("usage: kotune data CONFIG.yaml [--out DIR] [--key=value ...]\n\nWrites data_report.json and lengths.png "
         "(default: runs/data_report/<config name>) and prints the summary.")


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    out = None
    if "--out" in argv:
        i = argv.index("--out")
        out, argv = argv[i + 1], argv[:i] + argv[i + 2:]
    return run_data_report(argv, out)


def run_data_report(argv: list[str], out_dir: str | None = None) -> int:
    from kotune.data.mixture import load_all

    path, raw = read_config(argv)
    kotune, mixture, *_, problems = check_config(raw, stage="sft")
    # The sources are read before torch and the tokenizer load, so a data mistake is reported in a second.
    loaded = None if problems else load_all(mixture, kotune.get("strict", False))
    cfg = build_config(raw, stage="sft", source=path)

    from kotune.data.prepare import prepare_sft_data
    from kotune.data.prompt_formats import prepare_chat_tokenizer
    from kotune.data.report import build_report, format_report, plot_lengths
    from kotune.models.loading import load_model_config, load_tokenizer

    m = cfg.model
    model_type = load_model_config(m.model_name_or_path, m.trust_remote_code, m.model_revision).model_type
    tokenizer = load_tokenizer(m.model_name_or_path, m.trust_remote_code, m.model_revision)
    prepare_chat_tokenizer(tokenizer, cfg, model_type, m.model_name_or_path)
    variants, eval_dataset, sources, hit = prepare_sft_data(cfg, tokenizer, loaded)
    report = build_report(cfg, tokenizer, variants, sources)
    report["cache_hit"] = hit
    report["eval_examples"] = len(eval_dataset) if eval_dataset is not None else 0
    out = Path(out_dir or Path("runs") / "data_report" / Path(cfg.source).stem)
    out.mkdir(parents=True, exist_ok=True)
    (out / "data_report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    plot_lengths([len(x) for x in variants[0]["input_ids"]], out / "lengths.png", cfg.training.max_length)
    print(format_report(report))
    print(f"written: {out / 'data_report.json'}, {out / 'lengths.png'}")
    return 0
