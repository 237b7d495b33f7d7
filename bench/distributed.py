"""Benchmark: DDP vs FSDP2 vs DeepSpeed ZeRO-3 on 2 CPU processes, the same full fine-tuning run.

    HF_HUB_OFFLINE=1 DS_ACCELERATOR=cpu .venv/bin/python bench/distributed.py [--steps 12] [--hidden 512] [--write]

A Llama-shaped model built from config (hidden 512, 8 layers, 32K vocabulary: ~60 M parameters, fp32) trains on the
bundled Korean instructions for `--steps` optimizer steps under each engine, launched as users launch it
(accelerate for DDP and FSDP2, the deepspeed launcher for ZeRO-3). Reported per engine: trained tokens per second
(TRL's num_tokens over train_runtime, the training loop only) and the peak resident memory of each process
(ru_maxrss, read by a small wrapper around train/sft.py), with ratios against DDP from the same run.
On CPU the sharded engines trade speed for memory: their all-gathers go through gloo. On GPUs the ratios differ;
bench/gpu.sh measures one GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
BIN = Path(sys.executable).parent
WRAPPER = """import resource, runpy, sys, os, json
args = sys.argv[1:]  # the deepspeed launcher puts --local_rank=N first; the script reads it where it usually is
rank_flag = [a for a in args if a.startswith("--local_rank")]
args = [a for a in args if not a.startswith("--local_rank")]
path = args[0]; sys.argv = args + rank_flag
try:
    runpy.run_path(path, run_name="__main__")
finally:
    rank = os.environ.get("RANK", "0")
    with open(os.path.join(os.environ["KOTUNE_BENCH_RSS"], f"rank{rank}.json"), "w") as f:
        json.dump({"max_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}, f)
"""


def build_base(folder: Path, hidden: int, layers: int) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    from kotune.testing.tiny import sentencepiece_tokenizer

    tokenizer = sentencepiece_tokenizer(folder)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 4,
                         num_hidden_layers=layers, num_attention_heads=8, num_key_value_heads=8,
                         max_position_embeddings=1024, tie_word_embeddings=False,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    import torch

    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def run(engine: str, base: Path, root: Path, steps: int) -> dict:
    out, rss = root / engine, root / f"{engine}-rss"
    rss.mkdir()
    cfg = {"model_name_or_path": str(base), "dtype": "float32", "use_peft": False, "learning_rate": 1e-4,
           "dataset_mixture": {"seed": 1, "datasets": [{"id": str(ROOT / "src/kotune/data/sample/instructions.jsonl"),
                                                        "format": "instruction"}]},
           "output_dir": str(out), "max_length": 256, "max_steps": steps, "per_device_train_batch_size": 4,
           "logging_steps": 1, "save_strategy": "no", "bf16": False, "report_to": [], "seed": 7,
           "gradient_checkpointing": False}
    if engine == "FSDP2":
        cfg["fsdp_version"] = 2
    path = root / f"{engine}.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    wrapper = root / "rss_wrapper.py"
    wrapper.write_text(WRAPPER)
    script = [str(wrapper), str(ROOT / "train/sft.py"), str(path)]
    if engine == "ZeRO-3":
        cmd = [str(BIN / "deepspeed"), "--num_gpus", "2", *script, "--deepspeed", str(ROOT / "deepspeed/zero3.json")]
    else:
        cmd = [str(BIN / "accelerate"), "launch", "--config_file", str(ROOT / "configs/accelerate/cpu_2proc.yaml"),
               *script]
    env = {**os.environ, "KOTUNE_BENCH_RSS": str(rss), "DS_ACCELERATOR": "cpu", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        sys.exit(f"{engine} failed:\n{proc.stderr[-3000:]}")
    state = json.loads((out / "trainer_state.json").read_text())
    tokens = max(h.get("num_tokens", 0) for h in state["log_history"])
    runtime = next(h["train_runtime"] for h in state["log_history"] if "train_runtime" in h)
    peaks = [json.loads(p.read_text())["max_rss_kib"] / 1024**2 for p in sorted(rss.glob("rank*.json"))]
    record = json.loads((out / "run_info.json").read_text())
    return {"engine": engine, "type": record["distributed_type"], "tokens_s": tokens / runtime, "rss": peaks,
            "loss": [h["loss"] for h in state["log_history"] if "loss" in h][-1]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--write", action="store_true", help="record the table in bench/RESULTS.md")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = build_base(root / "base", opts.hidden, opts.layers)
        rows = [run(engine, base, root, opts.steps) for engine in ("DDP", "FSDP2", "ZeRO-3")]
    ddp = rows[0]
    lines = ["| engine (2 CPU processes, gloo) | accelerate's type | tokens/s | vs DDP | peak RSS per process (GiB) "
             "| vs DDP | last loss |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['engine']} | {r['type']} | {r['tokens_s']:,.0f} | {r['tokens_s'] / ddp['tokens_s']:.2f}× "
                     f"| {' / '.join(f'{g:.2f}' for g in r['rss'])} | {max(r['rss']) / max(ddp['rss']):.2f}× "
                     f"| {r['loss']:.4f} |")
    table = "\n".join(lines)
    print(table)
    if opts.write:
        sys.path.insert(0, str(ROOT / "bench"))
        from packing import write_results

        note = (f"Llama-shaped model from config, hidden {opts.hidden}, {opts.layers} layers, 32K vocabulary, fp32, "
                f"full fine-tuning, {opts.steps} steps of batch 4 × 2 processes at max_length 256 (packed). Peak RSS "
                "includes each process's Python, torch and the data pipeline (~1 GiB before any weight), so the "
                "sharded engines' saving on model states shows as a difference, not a ratio of model sizes.")
        write_results("distributed", table + "\n\n" + note,
                      " ".join(["python bench/distributed.py"] + sys.argv[1:]).replace(" --write", ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
