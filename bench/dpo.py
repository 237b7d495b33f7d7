"""Benchmark: DPO reference cost on a tiny model on CPU, TRL's defaults vs kotune's options, in one run.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/dpo.py [--steps 12] [--write]

Counts the reference forward passes per optimizer step (no-grad forwards during training) and times the steps:
  - TRL default: PEFT policy, reference = frozen copy of the adapter, reference pass every step;
  - kotune precompute_ref_log_probs: one reference pass over the data before training, none during it;
  - full DPO (use_peft: false): a frozen copy of the whole model as the reference.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from packing import write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


class ForwardCounter:
    """Counts model forwards run without grad while training steps run."""

    def __init__(self, model):
        self.no_grad = 0
        model.get_input_embeddings().register_forward_pre_hook(self._hook)

    def _hook(self, module, args):
        import torch

        if not torch.is_grad_enabled():
            self.no_grad += 1


def run(base: Path, work: Path, name: str, steps: int, **settings) -> dict:
    import torch

    from kotune.config import build_config
    from kotune.data.preference import build_preference_data
    from kotune.stages.dpo import dpo_trainer_class
    from kotune.stages.policy import load_policy
    from kotune.models.loading import load_tokenizer
    from kotune.data.prompt_formats import install_template

    raw = {"model_name_or_path": str(base), "dtype": "float32", "output_dir": str(work / name), "bf16": False,
           "gradient_checkpointing": False, "report_to": [], "save_strategy": "no", "max_steps": steps,
           "per_device_train_batch_size": 4, "max_length": 256, "max_prompt_length": 128, "learning_rate": 1e-4,
           "logging_steps": 1, "seed": 0, "use_peft": True, "lora_r": 16, "lora_alpha": 32,
           "dataset_mixture": {"datasets": [{"id": str(ROOT / "src/kotune/data/sample/preference.jsonl"),
                                             "format": "preference"}]}}
    raw.update(settings)
    cfg = build_config(raw, stage="dpo")
    tok = load_tokenizer(str(base))
    install_template(tok, "koquality")
    data, _, _ = build_preference_data(cfg.kotune.dataset_mixture, tok, 256, 128)
    torch.manual_seed(0)
    model, ref = load_policy(cfg.model, cfg.training, tok, reference=True, stage="dpo")
    t0 = time.perf_counter()
    trainer = dpo_trainer_class()(model=model, ref_model=ref, args=cfg.training, train_dataset=data,
                                  processing_class=tok)
    setup = time.perf_counter() - t0
    counters = [ForwardCounter(trainer.model)] + ([ForwardCounter(trainer.ref_model)] if trainer.ref_model else [])
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    ref_forwards = sum(c.no_grad for c in counters)
    return {"name": name, "ref_per_step": ref_forwards / steps, "step_s": seconds / steps, "setup_s": setup}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--write", action="store_true")
    opts = parser.parse_args()
    from kotune.testing.tiny import tiny_base

    work = Path(tempfile.mkdtemp(prefix="kotune-bench-dpo-"))
    base = tiny_base("gpt_neox", work / "base", hidden=256, layers=4, seed=0)
    results = [
        run(base, work, "TRL default (PEFT, reference adapter every step)", opts.steps),
        run(base, work, "kotune precompute_ref_log_probs: true", opts.steps, precompute_ref_log_probs=True),
        run(base, work, "full DPO (use_peft: false, frozen copy)", opts.steps, use_peft=False),
    ]
    baseline = results[0]["step_s"]
    lines = ["| setup | reference forwards / step | step time (s) | vs TRL default | set-up incl. precompute (s) |",
             "|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['name']} | {r['ref_per_step']:.1f} | {r['step_s']:.3f} | {r['step_s'] / baseline:.2f}× "
                     f"| {r['setup_s']:.2f} |")
    table = "\n".join(lines)
    print(table)
    if opts.write:
        write_results("dpo", table, " ".join(["python bench/dpo.py"] + sys.argv[1:]).replace(" --write", ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
