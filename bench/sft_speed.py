"""Benchmark: kotune's SFT step vs TRL SFTTrainer's defaults and TRL's padding-free batches, same model and data.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/sft_speed.py [--rows 1200] [--steps 24] [--isa AVX2] [--write]

One tiny GPT-NeoX (built from config, random weights), one set of Korean instruction rows with a long tail of
lengths (all within max_length, so no setup drops or truncates), full fine-tuning, batch 8, the same number of
optimizer steps. Each setup runs in its own process (peak RSS is per setup):
  kotune: its defaults through the real stage (`kotune.stages.sft.main`), and with `packing: true`;
  TRL: SFTTrainer defaults (bf16=True, gradient_checkpointing=True), bf16=False, padding_free=True (TRL needs
  packing or max_length=None for it; max_length=None keeps the examples per step), and its best: padding-free
  without bf16 emulation or checkpointing, and bfd packing.
Useful tokens are non-pad tokens (`include_num_input_tokens_seen="non_padding"`) per second of wall time over the
steps after `--warmup`, timed by a callback that the bench adds to every Trainer (kotune's too); the fastest of
`--repeats` round-robin runs counts (a shared machine's busy spells only slow runs down), and the median of the runs
is shown beside it. Ratios are against TRL's defaults and TRL's best setup measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from transformers import TrainerCallback

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
MAX_LENGTH, BATCH = 512, 8
SETUPS = {  # name: (runner, TRL/kotune settings)
    "kotune defaults": ("kotune", {}),
    "kotune packing: true": ("kotune", {"packing": True}),
    "kotune packing: true, bf16: false": ("kotune", {"packing": True, "bf16": False}),
    "TRL defaults (bf16, checkpointing)": ("trl", {}),
    "TRL bf16=False": ("trl", {"bf16": False}),
    "TRL padding_free=True": ("trl", {"padding_free": True, "max_length": None}),
    "TRL padding_free, bf16=False, no checkpointing": ("trl", {"padding_free": True, "max_length": None,
                                                               "bf16": False, "gradient_checkpointing": False}),
    "TRL packing (bfd), bf16=False, no checkpointing": ("trl", {"packing": True, "bf16": False,
                                                                "gradient_checkpointing": False}),
}


def make_rows(n: int, path: Path, seed: int = 0) -> Path:
    """Instruction rows from the bundled sample, inputs stretched to a long tail (1 to ~12 sentences)."""
    from kotune.testing.tiny import sample_path

    rng = random.Random(seed)
    base = [json.loads(line) for line in sample_path().read_text(encoding="utf-8").splitlines() if line.strip()]
    pool = [r["output"] for r in base if len(r["output"]) > 10]
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            row = dict(base[i % len(base)])
            row["input"] = " ".join([row.get("input") or ""] + rng.choices(pool, k=int(2 ** rng.uniform(0, 3.6)) - 1))
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def common(steps: int) -> dict:
    return {"per_device_train_batch_size": BATCH, "max_steps": steps, "learning_rate": 1e-4, "logging_steps": 10,
            "save_strategy": "no", "report_to": [], "seed": 0, "include_num_input_tokens_seen": "non_padding"}


def run_kotune(work: Path, data: Path, extra: dict, steps: int) -> dict:
    import yaml

    from kotune.stages.sft import main

    out = work / f"out-kotune-{len(extra)}"
    cfg = {"model_name_or_path": str(work / "base"), "prompt_format": "koquality", "use_peft": False,
           "max_length": MAX_LENGTH, "output_dir": str(out), "overwrite_output_dir": True, "data_cache": False,
           "dataset_mixture": {"seed": 0, "datasets": [{"id": str(data), "format": "instruction"}]},
           **common(steps), **extra}
    path = work / f"kotune-{len(extra)}.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    assert main([str(path)]) == 0
    state = json.loads((out / "trainer_state.json").read_text())
    metrics = json.loads((out / "train_results.json").read_text())
    return {"train_runtime": metrics["train_runtime"], "examples": state["global_step"] * BATCH}


def run_trl(work: Path, data: Path, extra: dict, steps: int) -> dict:
    from datasets import load_dataset
    from trl import SFTConfig, SFTTrainer

    from kotune.data.prompt_formats import install_template, join_instruction
    from kotune.models.loading import load_tokenizer

    tok = load_tokenizer(str(work / "base"))
    install_template(tok, "koquality")
    rows = load_dataset("json", data_files=str(data), split="train")
    rows = rows.map(lambda r: {"prompt": [{"role": "user", "content": join_instruction(r["instruction"], r["input"])}],
                               "completion": [{"role": "assistant", "content": r["output"]}]},
                    remove_columns=rows.column_names)
    settings = {"max_length": MAX_LENGTH, **common(steps), **extra}
    args = SFTConfig(output_dir=str(work / "out-trl"), use_cpu=True, **settings)
    trainer = SFTTrainer(model=str(work / "base"), args=args, train_dataset=rows, processing_class=tok)
    result = trainer.train()
    return {"train_runtime": result.metrics["train_runtime"]}


class StepTimer(TrainerCallback):
    """Wall time and tokens seen between the start of step `warmup` and the end of the last step."""

    def __init__(self, warmup: int):
        import time

        self.warmup, self.clock, self.start, self.end = warmup, time.perf_counter, None, None

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.warmup:
            self.start = (self.clock(), state.num_input_tokens_seen)

    def on_step_end(self, args, state, control, **kwargs):
        self.end = (self.clock(), state.num_input_tokens_seen)


def worker(name: str, work: Path, data: Path, steps: int, warmup: int) -> None:
    import torch
    from transformers import Trainer

    torch.manual_seed(0)
    timer = StepTimer(warmup)
    init = Trainer.__init__

    def timed_init(self, *args, **kwargs):  # the same timer in kotune's trainer and TRL's
        init(self, *args, **kwargs)
        self.add_callback(timer)

    Trainer.__init__ = timed_init
    runner, extra = SETUPS[name]
    out = (run_kotune if runner == "kotune" else run_trl)(work, data, extra, steps)
    (t0, n0), (t1, n1) = timer.start, timer.end
    out.update(tokens=n1 - n0, seconds=t1 - t0)
    out["rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(out))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1200)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--warmup", type=int, default=3, help="steps not timed")
    parser.add_argument("--repeats", type=int, default=2, help="runs per setup; the fastest counts")
    parser.add_argument("--write", action="store_true", help="record the results in bench/RESULTS.md")
    parser.add_argument("--only", help="setup names separated by ; (default: all); TRL defaults always run")
    parser.add_argument("--isa", help="ONEDNN_MAX_CPU_ISA for every setup (AVX2: torch emulates bf16, as on a CPU "
                                      "without AVX512-BF16/AMX); recorded in its own section")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.worker:
        worker(opts.worker, Path(opts.work), Path(opts.work) / "rows.jsonl", opts.steps, opts.warmup)
        return 0

    from kotune.testing.tiny import tiny_base

    work = Path(tempfile.mkdtemp(prefix="kotune-sft-speed-"))
    tiny_base("gpt_neox", work / "base", hidden=128, layers=2, seed=0)
    make_rows(opts.rows, work / "rows.jsonl")
    results: dict = {}
    setups = list(SETUPS)
    if opts.only:
        wanted = {n.strip() for n in opts.only.split(";")} | {"TRL defaults (bf16, checkpointing)"}
        setups = [n for n in SETUPS if n in wanted]
    for rep in range(opts.repeats):  # round robin, so a busy spell on a shared machine hits every setup alike
        for name in setups if rep % 2 == 0 else reversed(setups):
            proc = subprocess.run([sys.executable, __file__, "--worker", name, "--work", str(work),
                                   "--steps", str(opts.steps), "--warmup", str(opts.warmup)], capture_output=True,
                                  text=True, env={**os.environ, "KOTUNE_CACHE_DIR": str(work / "cache"),
                                                 **({"ONEDNN_MAX_CPU_ISA": opts.isa} if opts.isa else {})})
            line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
            if proc.returncode or not line:
                print(f"{name}: failed\n{proc.stderr[-3000:]}", file=sys.stderr)
                return 1
            run = json.loads(line[-1][len("RESULT "):])
            run["speed"] = run["tokens"] / run["seconds"]
            print(f"{name}: {run['speed']:,.0f} tokens/s", file=sys.stderr)
            best = results.get(name)
            runs = (best["runs"] if best else []) + [run["speed"]]
            results[name] = run if best is None or run["speed"] > best["speed"] else best
            results[name]["rss_mib"] = max(run["rss_mib"], best["rss_mib"] if best else 0)
            results[name]["runs"] = runs
    results = {name: results[name] for name in setups}
    table = make_table(results)
    print(table)
    if opts.write:
        sys.path.insert(0, str(ROOT / "bench"))
        from packing import write_results

        command = " ".join(["python bench/sft_speed.py"] + sys.argv[1:]).replace(" --write", "")
        write_results(f"sft_speed_{opts.isa.lower()}" if opts.isa else "sft_speed", table, command)
    return 0


def make_table(results: dict) -> str:
    default = results["TRL defaults (bf16, checkpointing)"]["speed"]
    best_name = max((n for n in results if n.startswith("TRL")), key=lambda n: results[n]["speed"])
    best = results[best_name]["speed"]
    median = {name: statistics.median(r["runs"]) for name, r in results.items()}
    lines = ["| setup | useful tokens/s | vs TRL defaults | vs TRL best | median of runs (vs TRL best's median) "
             "| peak RSS (MiB) |", "|---|---|---|---|---|---|"]
    for name, r in results.items():
        mark = " (TRL best)" if name == best_name else ""
        lines.append(f"| {name}{mark} | {r['speed']:,.0f} | {r['speed'] / default:.2f}× | {r['speed'] / best:.2f}× "
                     f"| {median[name]:,.0f} ({median[name] / median[best_name]:.2f}×) | {r['rss_mib']:,.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
