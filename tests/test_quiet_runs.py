"""A plain run prints no warning that kotune's own defaults or its pinned stack cause, on a machine without a GPU:
not transformers' FutureWarnings on checkpointing, not DeepSpeed's CPU fallback, not bitsandbytes' Hub kernel."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO, base_config, subprocess_env, write_config

NOISE = ("FutureWarning", "Setting accelerator to CPU", "kernels-community", "is_gradient_checkpointing")


def test_a_qlora_run_and_its_chat_print_no_library_noise(tiny_bases, tmp_path):
    env = {k: v for k, v in subprocess_env().items() if k != "DS_ACCELERATOR"}  # as a user's shell has it
    out = tmp_path / "out"
    # QLoRA with checkpointing, as the GPU recipes run (PEFT's k-bit preparation calls deprecated names); precision
    # is kotune's own choice, as a user who does not set it gets it
    cfg = base_config(tiny_bases["llama"], out, max_steps=2, load_in_4bit=True, gradient_checkpointing=True)
    cfg.pop("bf16")
    run = subprocess.run([sys.executable, str(REPO / "train" / "sft.py"), str(write_config(tmp_path / "c.yaml", cfg))],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    chat = subprocess.run([sys.executable, "-m", "kotune.cli", "chat", str(out), "--prompt", "한국의 수도는?",
                           "--max_new_tokens", "4"], env=env, capture_output=True, text=True, timeout=600)
    assert chat.returncode == 0, chat.stderr[-3000:]
    for proc in (run, chat):
        printed = proc.stdout + proc.stderr
        assert not [n for n in NOISE if n in printed], printed[-3000:]
