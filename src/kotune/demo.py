"""`kotune demo`: the whole SFT path offline, on a tiny Polyglot-shaped model built from the bundled sample."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from kotune.errors import KotuneError

DEMO_CONFIG = Path("configs/sft/polyglot-ko-tiny-demo.yaml")
DEMO_BASE = Path("runs/demo/base")
DEMO_SFT = Path("runs/demo/sft")
# A prompt from the bundled sample: a tiny random base can only memorize, not generalize.
QUESTION = "대한민국의 수도는 어디인가요?"


def run_demo(root: str | Path = ".") -> int:
    root = Path(root).resolve()
    if not (root / "train" / "sft.py").is_file() or not (root / DEMO_CONFIG).is_file():
        raise KotuneError("run the demo from a kotune checkout (it needs train/sft.py and configs/)")
    os.chdir(root)
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    start = time.time()

    print(f"[1/3] building a tiny GPT-NeoX base and a Korean BPE tokenizer from the bundled sample → {DEMO_BASE}")
    from kotune.tiny import tiny_base

    tiny_base("gpt_neox", DEMO_BASE, hidden=128, layers=2, seed=0, init_std=0.2)  # wide init: LoRA can move it

    cmd = [sys.executable, "train/sft.py", str(DEMO_CONFIG), "--overwrite_output_dir=true"]
    print("[2/3] fine-tuning with LoRA through the real entry point:\n      " + " ".join(cmd[1:]), flush=True)
    code = subprocess.call(cmd, env=env)
    if code != 0:
        print(f"demo: training failed (exit {code})", file=sys.stderr)
        return code

    print("[3/3] answering a Korean prompt with the trained adapter")
    from kotune.generate import answer, load_for_inference

    model, tokenizer = load_for_inference(DEMO_SFT)
    reply = answer(model, tokenizer, QUESTION)
    print(f"  질문: {QUESTION}\n  답변: {reply}")
    print(f"\ndone in {time.time() - start:.0f} s. Written:")
    for path, what in [(DEMO_BASE, "tiny base model + tokenizer"),
                       (DEMO_SFT, "LoRA adapter, tokenizer with chat template, config, run record"),
                       (DEMO_SFT / "loss.png", "loss curve"), (DEMO_SFT / "runs", "TensorBoard logs")]:
        print(f"  {path}  ({what})")
    return 0
