"""`kotune ray STAGE CONFIG`: a stage on a Ray cluster through Ray Train's TorchTrainer.

The fast tests need no Ray: a user's mistakes are reported before Ray is imported. The slow ones start a real
local Ray instance with 2 CPU workers and compare its run with the same run under `accelerate launch`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, SAMPLE, base_config, subprocess_env, write_config

KOTUNE = str(Path(sys.executable).with_name("kotune"))
ACCELERATE = str(Path(sys.executable).with_name("accelerate"))


def kotune_ray(capsys, *argv: str) -> tuple[int, str]:
    """`kotune ray ARGV` in this process: (exit code, stderr)."""
    from kotune.cli import main

    try:
        code = main(["ray", *argv])
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


def test_user_mistakes_are_one_error_before_ray_starts(tmp_path, capsys):
    """A misspelled stage, a missing config, a misspelled key and a bad --workers each end in one message and exit 2,
    before Ray is imported or started."""
    config = write_config(tmp_path / "sft.yaml", base_config(tmp_path / "base", tmp_path / "out"))
    cases = {  # argv → what the one message must say
        ("sfx", str(config)): "stage 'sfx' is not a kotune stage: did you mean 'sft'?",
        ("sft", str(tmp_path / "nope.yaml"), "--workers", "2"): "nope.yaml' does not exist",
        ("sft", str(config), "--", "--lerning_rate=1e-4"): "lerning_rate: unknown key: did you mean 'learning_rate'?",
        ("sft", str(config), "--workers", "two"): "--workers: 'two' must be a whole number",
    }
    for argv, expected in cases.items():
        code, err = kotune_ray(capsys, *argv)
        assert code == 2 and expected in err and err.startswith("kotune: error:") and "Traceback" not in err, err
    # every problem of a config at once: the model dir of this config does not exist either
    assert "model_name_or_path: '" in kotune_ray(capsys, "sft", str(config), "--lerning_rate=1e-4")[1]
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.ray").exists()


def test_without_ray_installed_it_says_how_to_install(tmp_path, capsys, monkeypatch):
    """Ray is an optional extra: without it, `kotune ray` says which extra to install (a `None` in sys.modules is
    how Python itself hides a module: `import ray` then fails, and find_spec finds nothing)."""
    monkeypatch.setitem(sys.modules, "ray", None)
    (tmp_path / "base").mkdir()  # a config with nothing else to fix
    config = write_config(tmp_path / "sft.yaml", base_config(tmp_path / "base", tmp_path / "out"))
    code, err = kotune_ray(capsys, "sft", str(config), "--workers", "2")
    assert code == 2 and "pip install 'kotune[ray]'" in err and "Traceback" not in err


def losses(out: Path) -> list[float]:
    state = json.loads((out / "trainer_state.json").read_text())
    return [h["loss"] for h in state["log_history"] if "loss" in h]


def run(args: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow  # a local Ray instance and two training runs: 1-3 minutes on 2 cores
def test_ray_two_cpu_workers_train_as_ddp_does(tiny_bases, tmp_path):
    """`kotune ray sft CONFIG --workers 2` on a local Ray instance trains one 2-process LoRA run: rank 0 writes the
    adapter and run_info.json (world_size 2), and the loss curve is the one `accelerate launch` gives with 2
    processes on the same config."""
    pytest.importorskip("ray")
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    out, ddp = tmp_path / "ray_out", tmp_path / "ddp_out"
    config = write_config(tmp_path / "ray.yaml", base_config(tiny_bases["gpt_neox"], out, max_steps=4))
    proc = run([KOTUNE, "ray", "sft", str(config), "--workers", "2"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert (out / "adapter_model.safetensors").is_file() and (out / "adapter_config.json").is_file()
    record = json.loads((out / "run_info.json").read_text())
    assert record["world_size"] == 2 and record["distributed_type"] == "MULTI_CPU"
    assert record["command"][1:4] == ["kotune", "ray", "sft"]  # what the user ran, not Ray's worker command
    assert not list(out.glob("*.ray")) and (tmp_path / "ray_out.ray").is_dir()  # Ray's folder is beside the run
    ray_curve = losses(out)
    assert len(ray_curve) == 4 and all(loss > 0 for loss in ray_curve)

    adapter = load_file(out / "adapter_model.safetensors")
    assert all(t.abs().sum() > 0 for k, t in adapter.items() if "lora_B" in k)  # lora_B starts at 0: it trained
    base = AutoModelForCausalLM.from_pretrained(tiny_bases["gpt_neox"], dtype=torch.float32)
    reference = {k: v.clone() for k, v in base.state_dict().items()}
    model = PeftModel.from_pretrained(base, out).merge_and_unload()
    changed = [k for k, v in model.state_dict().items() if k in reference and not torch.equal(v, reference[k])]
    assert any("query_key_value" in k for k in changed)

    write_config(tmp_path / "ddp.yaml", base_config(tiny_bases["gpt_neox"], ddp, max_steps=4))
    proc = run([ACCELERATE, "launch", "--config_file", str(REPO / "configs/accelerate/cpu_2proc.yaml"),
                str(REPO / "train/sft.py"), str(tmp_path / "ddp.yaml")])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    # Tolerance: both runs are the same 2-rank gloo DDP (same seed, same sampler split, same fp32 all-reduce); on
    # this machine the two curves were bit-identical (difference 0.0). 1e-5 leaves room for fp32 reduction order,
    # should a thread count differ, while one worker instead of two (a different batch per step) already moves the
    # first loss by 8e-2.
    torch.testing.assert_close(torch.tensor(ray_curve), torch.tensor(losses(ddp)), rtol=1e-5, atol=1e-5)


@pytest.mark.slow  # starts a local Ray instance: 1-3 minutes on 2 cores
def test_ray_a_workers_error_is_the_last_line_and_nonzero(tiny_bases, tmp_path):
    """A mistake found only inside the workers (a data file without the columns its format needs) stops the run with
    exit 2 and the worker's own one-line message as the last line. A rerun into a finished output_dir, and --gpus on a
    machine without GPUs, are refused before Ray starts."""
    pytest.importorskip("ray")
    import torch

    data = tmp_path / "qa.jsonl"
    data.write_text(json.dumps({"질문": "한국의 수도는 어디인가요?", "답": "서울입니다."}, ensure_ascii=False) + "\n")
    cfg = base_config(tiny_bases["gpt_neox"], tmp_path / "out", max_steps=2)
    cfg["dataset_mixture"]["datasets"] = [{"id": str(data), "format": "instruction"}]
    proc = run([KOTUNE, "ray", "sft", str(write_config(tmp_path / "bad.yaml", cfg)), "--workers", "2"])
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert last.startswith("kotune: error: rank ") and "needs columns ['instruction', 'output']" in last, last
    assert not (tmp_path / "out").exists()

    done = tmp_path / "done"
    done.mkdir()
    (done / "adapter_config.json").write_text("{}")
    cfg = base_config(tiny_bases["gpt_neox"], done, max_steps=2, dataset_mixture={"datasets": [{"id": str(SAMPLE)}]})
    proc = run([KOTUNE, "ray", "sft", str(write_config(tmp_path / "again.yaml", cfg))])
    assert proc.returncode == 2 and "already exists and is not empty" in proc.stderr.strip().splitlines()[-1]
    assert "Started a local Ray instance" not in proc.stderr
    if not torch.cuda.is_available():  # GPUs asked of a local instance that has none: refused, not a silent wait
        cfg["output_dir"] = str(tmp_path / "gpu")
        proc = run([KOTUNE, "ray", "sft", str(write_config(tmp_path / "gpu.yaml", cfg)), "--gpus"])
        assert proc.returncode == 2 and "--gpus: 2 worker(s) need 2 GPU(s) and this machine has 0" in proc.stderr
