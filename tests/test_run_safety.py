"""Run safety on the real entry point: no overwrite, resume after kill -9, SIGTERM checkpoint, NaN stop,
and one clean message (no traceback, nothing written) for each user mistake."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import torch
from safetensors.torch import load_file

from conftest import REPO, base_config, run_sft_inprocess, subprocess_env, wait_for, write_config

SFT = str(REPO / "train" / "sft.py")


def test_existing_output_dir_is_refused_then_overwritten_on_request(tiny_bases, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    path = write_config(tmp_path / "c.yaml", base_config(tiny_bases["gpt_neox"], out, max_steps=2))
    assert run_sft_inprocess(path) == 2
    err = capsys.readouterr().err
    assert "already exists and is not empty" in err and "--resume_from_checkpoint=true" in err
    assert sorted(p.name for p in out.iterdir()) == ["precious.txt"]
    assert run_sft_inprocess(path, "--overwrite_output_dir=true") == 0
    assert (out / "adapter_model.safetensors").is_file()


def test_resume_after_kill_9_reaches_the_same_weights(tiny_bases, tmp_path):
    cfg = dict(max_steps=30, save_strategy="steps", save_steps=3, lora_dropout=0.1)  # dropout: RNG must resume too
    straight = tmp_path / "straight"
    assert run_sft_inprocess(write_config(tmp_path / "a.yaml", base_config(tiny_bases["llama"], straight, **cfg))) == 0

    killed = tmp_path / "killed"
    path = write_config(tmp_path / "b.yaml", base_config(tiny_bases["llama"], killed, **cfg))
    proc = subprocess.Popen([sys.executable, SFT, str(path)], env=subprocess_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: (killed / "checkpoint-3" / "trainer_state.json").is_file(), proc)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (killed / "adapter_model.safetensors").exists()

    assert run_sft_inprocess(path, "--resume_from_checkpoint=true") == 0
    a = load_file(straight / "adapter_model.safetensors")
    b = load_file(killed / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-5, atol=1e-6)


def test_sigterm_writes_a_checkpoint_and_resume_continues(tiny_bases, tmp_path):
    out = tmp_path / "out"
    path = write_config(tmp_path / "c.yaml", base_config(tiny_bases["llama"], out, max_steps=400))
    proc = subprocess.Popen([sys.executable, SFT, str(path)], env=subprocess_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: (out / "run_info.json").is_file(), proc)
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err[-2000:]
    ckpts = sorted(out.glob("checkpoint-*"))
    assert len(ckpts) == 1 and (ckpts[0] / "adapter_model.safetensors").is_file()
    step = json.loads((ckpts[0] / "trainer_state.json").read_text())["global_step"]
    assert 0 < step < 400
    assert "SIGTERM" in err and "resume_from_checkpoint" in err
    assert run_sft_inprocess(path, "--resume_from_checkpoint=true", "--max_steps", str(step + 2)) == 0
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == step + 2


def test_nonfinite_loss_stops_and_keeps_the_last_good_checkpoint(tiny_bases, tmp_path, capsys):
    out = tmp_path / "out"
    cfg = base_config(tiny_bases["gpt_neox"], out, use_peft=False, learning_rate=1.0e30, max_grad_norm=0.0,
                      max_steps=10, save_strategy="steps", save_steps=1)
    assert run_sft_inprocess(write_config(tmp_path / "c.yaml", cfg)) == 2
    err = capsys.readouterr().err
    assert "loss became" in err and "last good state" in err and "Traceback" not in err
    assert not (out / "model.safetensors").exists()  # no final model from diverged weights
    ckpts = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert ckpts, "the checkpoints before the divergence are kept"
    state = json.loads((ckpts[-1] / "trainer_state.json").read_text())
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in state["log_history"] if "loss" in h)


def _bad_configs(tiny_bases, tmp_path):
    good = lambda **kw: base_config(tiny_bases["gpt_neox"], tmp_path / f"out-{len(kw)}-{sorted(kw)}", **kw)  # noqa: E731
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"instruction": " ", "input": "", "output": ""}) + "\n")
    typo = good()
    typo["lerning_rate"] = typo.pop("learning_rate")
    return {
        "unknown key": (typo, "did you mean 'learning_rate'"),
        "wrong type": (good(max_steps="many"), "max_steps: expected an integer"),
        "missing model": (good(model_name_or_path=str(tmp_path / "no-model")), "does not exist"),
        "missing data": (good(dataset_mixture={"datasets": [{"id": str(tmp_path / "no.jsonl"), "format": "instruction"}]}),
                         "no.jsonl' not found"),
        "quantization": (good(load_in_4bit=True, load_in_8bit=True), "load_in_4bit and load_in_8bit"),
        "empty dataset": (good(dataset_mixture={"datasets": [{"id": str(empty), "format": "instruction"}]}),
                          "empty after filtering"),
    }


def test_user_mistakes_get_one_message_and_write_nothing(tiny_bases, tmp_path):
    cases = _bad_configs(tiny_bases, tmp_path)
    procs = {}
    for i, (name, (cfg, _)) in enumerate(cases.items()):
        path = write_config(tmp_path / f"bad{i}.yaml", cfg)
        procs[name] = subprocess.Popen([sys.executable, SFT, str(path)], env=subprocess_env(),
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        cfg, needle = cases[name]
        assert proc.returncode == 2, (name, err[-3000:])
        assert "Traceback" not in err and "kotune: error:" in err, (name, err[-3000:])
        assert needle in err, (name, err[-3000:])
        assert not os.path.exists(cfg["output_dir"]), name


def test_out_of_range_values_are_one_message_naming_the_key(tiny_bases, tmp_path):
    """Values the libraries would fail on mid-run (or take silently) are refused with the config: exit 2, one
    problem that names the key, no traceback, no output_dir."""
    cases = {
        "learning_rate": {"learning_rate": -1},
        "lora_r": {"lora_r": 0},
        "lora_dropout": {"lora_dropout": 2},
        "max_length": {"max_length": 0},
        "bnb_4bit_quant_type": {"load_in_4bit": True, "bnb_4bit_quant_type": "nf5"},
    }
    procs = {}
    for key, extra in cases.items():
        cfg = base_config(tiny_bases["gpt_neox"], tmp_path / f"out-{key}", **extra)
        path = write_config(tmp_path / f"{key}.yaml", cfg)
        procs[key] = (cfg, subprocess.Popen([sys.executable, SFT, str(path)], env=subprocess_env(),
                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for key, (cfg, proc) in procs.items():
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 2, (key, err[-3000:])
        assert "Traceback" not in err and err.count("kotune: error:") == 1, (key, err[-3000:])
        assert "1 problem:" in err and f"  - {key}: " in err, (key, err[-3000:])
        assert not os.path.exists(cfg["output_dir"]), key
