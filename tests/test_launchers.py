"""The real launchers: `accelerate launch` with two CPU processes, the `--cpu` form, and the demo."""

from __future__ import annotations

import pytest

import json
import shutil
import subprocess
import sys
from pathlib import Path


from conftest import REPO, base_config, subprocess_env, write_config

ACCELERATE = str(Path(sys.executable).with_name("accelerate"))


def _launch(args, cwd=REPO):
    proc = subprocess.run(args, cwd=cwd, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def _adapter_loads(base_dir, out):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), out)
    assert any("lora_A" in n for n, _ in model.named_parameters())


def test_accelerate_two_cpu_processes(tiny_bases, tmp_path):
    out = tmp_path / "out"
    path = write_config(tmp_path / "c.yaml", base_config(tiny_bases["gpt_neox"], out, max_steps=4))
    _launch([ACCELERATE, "launch", "--config_file", str(REPO / "configs/accelerate/cpu_2proc.yaml"),
             str(REPO / "train/sft.py"), str(path)])
    record = json.loads((out / "run_info.json").read_text())
    assert record["world_size"] == 2
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    _adapter_loads(tiny_bases["gpt_neox"], out)


@pytest.mark.slow  # multi-process, over 30 s on 2 cores: `make test-slow`
def test_accelerate_cpu_flag_form_trains(tiny_bases, tmp_path):
    """`accelerate launch --cpu --num_processes 2` (accelerate 1.15 starts one process for it) still trains."""
    out = tmp_path / "out"
    path = write_config(tmp_path / "c.yaml", base_config(tiny_bases["gpt_neox"], out, max_steps=3))
    _launch([ACCELERATE, "launch", "--cpu", "--num_processes", "2", str(REPO / "train/sft.py"), str(path)])
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 3
    _adapter_loads(tiny_bases["gpt_neox"], out)


@pytest.mark.slow  # multi-process, over 30 s on 2 cores: `make test-slow`
def test_demo_runs_offline_and_answers(tmp_path):
    """`kotune demo` from a copy of the checkout: builds the base, SFT then DPO through the entry points, answers."""
    root = tmp_path / "checkout"
    for part in ("train", "configs", "src"):
        shutil.copytree(REPO / part, root / part, ignore=shutil.ignore_patterns("__pycache__"))
    kotune = str(Path(sys.executable).with_name("kotune"))
    proc = _launch([kotune, "demo"], cwd=root)
    assert "답변:" in proc.stdout and "runs/demo/sft" in proc.stdout
    answer = proc.stdout.split("답변:")[1].splitlines()[0].strip()
    assert "서울" in answer  # the tiny model memorized the bundled sample
    for name in ("adapter_model.safetensors", "loss.png", "chat_template.jinja", "run_info.json"):
        assert (root / "runs/demo/sft" / name).is_file(), name
        assert (root / "runs/demo/dpo" / name).is_file(), name
    sft = [line.split("SFT:")[1] for line in proc.stdout.splitlines() if "SFT:" in line]
    dpo = [line.split("DPO:")[1] for line in proc.stdout.splitlines() if "DPO:" in line]
    assert len(dpo) == 4 and sum("니다" in a for a in dpo) > sum("니다" in a for a in sft)  # DPO made it polite
    assert list((root / "runs/demo/sft/runs").rglob("events.out.tfevents*")), "TensorBoard logs"
