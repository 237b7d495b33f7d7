"""`kotune demo`: SFT then DPO, offline, on a tiny Polyglot-shaped model built from the bundled sample."""

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
DEMO_DPO_CONFIG = Path("configs/dpo/polyglot-ko-tiny-demo.yaml")
DEMO_DPO = Path("runs/demo/dpo")
# A prompt from the bundled sample: a tiny random base can only memorize, not generalize.
QUESTION = "대한민국의 수도는 어디인가요?"
STYLE_QUESTIONS = ["일본의 수도는 어디야?", "물은 몇 도에서 끓어?", "소금의 주성분은 뭐예요?", "산소의 원소 기호는?"]


def run_demo(root: str | Path = ".") -> int:
    root = Path(root).resolve()
    if not (root / "train" / "sft.py").is_file() or not (root / DEMO_CONFIG).is_file():
        raise KotuneError("run the demo from a kotune checkout (it needs train/sft.py and configs/)")
    os.chdir(root)
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    start = time.time()

    print(f"[1/4] building a tiny GPT-NeoX base and a Korean BPE tokenizer from the bundled sample → {DEMO_BASE}")
    from kotune.testing.tiny import tiny_base

    tiny_base("gpt_neox", DEMO_BASE, hidden=128, layers=2, seed=0, init_std=0.2)  # wide init: LoRA can move it

    for step, config in (("2/4", DEMO_CONFIG), ("3/4", DEMO_DPO_CONFIG)):
        script = "train/sft.py" if config == DEMO_CONFIG else "train/dpo.py"
        cmd = [sys.executable, script, str(config), "--overwrite_output_dir=true"]
        what = "fine-tuning with LoRA" if config == DEMO_CONFIG else "DPO towards polite answers (합쇼체)"
        print(f"[{step}] {what} through the real entry point:\n      " + " ".join(cmd[1:]), flush=True)
        code = subprocess.call(cmd, env=env)
        if code != 0:
            print(f"demo: {script} failed (exit {code})", file=sys.stderr)
            return code

    print("[4/4] answering Korean prompts with the SFT adapter, then with the DPO adapter")
    from kotune.inference.generate import answer
    from kotune.inference.loading import load_for_inference

    sft_model, sft_tok = load_for_inference(DEMO_SFT)
    dpo_model, dpo_tok = load_for_inference(DEMO_DPO)
    print(f"  질문: {QUESTION}\n  답변: {answer(sft_model, sft_tok, QUESTION)}")
    for q in STYLE_QUESTIONS:
        print(f"  질문: {q}\n    SFT: {answer(sft_model, sft_tok, q)}\n    DPO: {answer(dpo_model, dpo_tok, q)}")
    print(f"\ndone in {time.time() - start:.0f} s. Written:")
    for path, what in [(DEMO_BASE, "tiny base model + tokenizer"),
                       (DEMO_SFT, "SFT LoRA adapter, tokenizer with chat template, config, run record"),
                       (DEMO_DPO, "DPO adapter (continued from the SFT adapter)"),
                       (DEMO_SFT / "loss.png", "loss curve"), (DEMO_SFT / "runs", "TensorBoard logs")]:
        print(f"  {path}  ({what})")
    return 0


def main(argv: list[str]) -> int:
    import argparse

    argparse.ArgumentParser(prog="kotune demo", description="Offline demo: a tiny Polyglot-shaped model, LoRA SFT, "
                            "then DPO, and Korean answers side by side (run from a kotune checkout).").parse_args(argv)
    return run_demo()
