"""Shared fixtures: tiny offline bases built once per session, and helpers that run the real entry point."""

from __future__ import annotations

import os
import runpy
import sys
import tempfile
from pathlib import Path

# Before any HF import: no Hub, caches in temp, DeepSpeed on CPU.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="kotune-hf-"))
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("KOTUNE_CACHE_DIR", tempfile.mkdtemp(prefix="kotune-data-"))
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "kotune" / "torch_extensions"))
# This environment's tools first, as in an activated venv. torch JIT-builds DeepSpeed's CPU ops with the first
# `ninja` on PATH; a system ninja of another version sees the other's build log as changed and rebuilds the op
# (~40 s) each time the two alternate.
if not os.environ.get("PATH", "").startswith(str(Path(sys.executable).parent) + os.pathsep):
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")

import pytest  # noqa: E402
import yaml  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "src" / "kotune" / "data" / "sample" / "instructions.jsonl"
ARCHS = ("gpt_neox", "llama", "mistral")


@pytest.fixture(scope="session")
def tiny_bases(tmp_path_factory) -> dict[str, Path]:
    """arch → folder with a random tiny model (hidden 64, 2 layers) and its tokenizer."""
    from kotune.testing.tiny import tiny_base

    root = tmp_path_factory.mktemp("bases")
    return {arch: tiny_base(arch, root / arch, hidden=64, layers=2, seed=0, init_std=0.2) for arch in ARCHS}


@pytest.fixture(scope="session")
def sp_tokenizer(tmp_path_factory):
    from kotune.testing.tiny import sentencepiece_tokenizer

    return sentencepiece_tokenizer(tmp_path_factory.mktemp("sp"))


@pytest.fixture(scope="session")
def bpe_tokenizer(tmp_path_factory):
    from kotune.testing.tiny import korean_bpe_tokenizer

    return korean_bpe_tokenizer(tmp_path_factory.mktemp("bpe"))


def base_config(model_dir, output_dir, **extra) -> dict:
    """A small, fast SFT config on the bundled sample."""
    cfg = {
        "model_name_or_path": str(model_dir),
        "dtype": "float32",
        "dataset_mixture": {"seed": 1, "datasets": [{"id": str(SAMPLE), "format": "instruction"}]},
        "output_dir": str(output_dir),
        "max_length": 128,
        "max_steps": 6,
        "per_device_train_batch_size": 4,
        "learning_rate": 1.0e-2,
        "logging_steps": 1,
        "save_strategy": "no",
        "bf16": False,
        "gradient_checkpointing": False,
        "report_to": [],
        "seed": 7,
        "use_peft": True,
        "lora_r": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.0,
    }
    cfg.update(extra)
    return cfg


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    return path


def run_entry_inprocess(script: str, config_path: Path, *overrides: str) -> int:
    """Run train/<script>.py in this process exactly as `python train/<script>.py CONFIG ...` would; the exit code."""
    argv = sys.argv
    sys.argv = [str(REPO / "train" / f"{script}.py"), str(config_path), *overrides]
    try:
        runpy.run_path(str(REPO / "train" / f"{script}.py"), run_name="__main__")
    except SystemExit as exit_:
        return int(exit_.code or 0)
    finally:
        sys.argv = argv
    return 0


def run_sft_inprocess(config_path: Path, *overrides: str) -> int:
    return run_entry_inprocess("sft", config_path, *overrides)


def run_launcher(args: list[str], timeout: int = 900):
    """A launcher command (accelerate, deepspeed, torchrun) from the repo root, on the CPU; fails with its output."""
    import subprocess

    env = subprocess_env()
    env["DS_ACCELERATOR"] = "cpu"
    proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def wait_for(predicate, proc, timeout: float = 120.0) -> bool:
    """Poll `predicate` until it holds (True), the process ends or the time runs out (False)."""
    import time

    start = time.time()
    while time.time() - start < timeout:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    return False


def kill_tree(proc) -> None:
    """kill -9 a launcher and every process under it, as a lost node would be: torchrun starts its workers in their
    own sessions, so killing the launcher's process group alone leaves them training."""
    import psutil

    try:
        parent = psutil.Process(proc.pid)
        descendants = parent.children(recursive=True)
    except psutil.NoSuchProcess:
        return
    for p in [*descendants, parent]:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(descendants, timeout=30)  # not the launcher itself: proc.wait() reaps it with its -9 status


def loss_curve(out: Path) -> list[float]:
    """The logged training losses of a finished run."""
    import json

    state = json.loads((Path(out) / "trainer_state.json").read_text())
    return [h["loss"] for h in state["log_history"] if "loss" in h]


def subprocess_env() -> dict:
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


@pytest.fixture(scope="session")
def preference_sft(tmp_path_factory):
    """A tiny model SFT-trained on both styles of every bundled preference answer (polite 합쇼체 and casual 반말),
    the start of every preference experiment; 12 held-out prompts the preference stages never see."""
    from kotune.testing.preference import sft_start

    return sft_start(tmp_path_factory.mktemp("preference"))
