"""launch.sh: the commands it prints, its errors, and one real two-process CPU launch. Shipped launcher configs."""

from __future__ import annotations

import json
import shlex
import subprocess

import pytest
import yaml

from conftest import REPO, base_config, subprocess_env, write_config

LAUNCH = str(REPO / "launch.sh")
DEMO = "configs/sft/polyglot-ko-tiny-demo.yaml"


def dry(*args) -> list[str]:
    args = list(args)
    at = args.index("--") if "--" in args else len(args)  # options go before `--`, overrides after it
    proc = subprocess.run([LAUNCH, *args[:at], "--dry-run", *args[at:]], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return shlex.split(proc.stdout.strip())


def test_zero3_dry_run_uses_deepspeed():
    cmd = dry("sft", DEMO, "--zero", "3")
    i = cmd.index("deepspeed")
    assert cmd[i + 1:i + 3] == ["--num_gpus", "1"]
    assert cmd[-4:] == [str(REPO / "train/sft.py"), DEMO, "--deepspeed", str(REPO / "deepspeed/zero3.json")]


def test_plain_multi_gpu_uses_accelerate_and_passes_overrides():
    cmd = dry("dpo", "configs/dpo/polyglot-ko-tiny-demo.yaml", "--gpus", "4", "--", "--beta=0.2")
    assert cmd[:4] == ["accelerate", "launch", "--num_processes", "4"] and "--multi_gpu" in cmd
    assert cmd[-3:] == [str(REPO / "train/dpo.py"), "configs/dpo/polyglot-ko-tiny-demo.yaml", "--beta=0.2"]


def test_fsdp_dry_run_uses_the_fsdp2_accelerate_config():
    cmd = dry("sft", DEMO, "--fsdp", "--gpus", "4", "--", "--learning_rate=1e-4")
    assert cmd[:4] == ["accelerate", "launch", "--config_file", str(REPO / "configs/accelerate/fsdp2.yaml")]
    assert "--num_processes" in cmd and cmd[cmd.index("--num_processes") + 1] == "4" and "--multi_gpu" not in cmd
    assert cmd[-3:] == [str(REPO / "train/sft.py"), DEMO, "--learning_rate=1e-4"]


def test_multinode_flags():
    cmd = dry("sft", DEMO, "--gpus", "8", "--zero", "3-offload", "--nodes", "2", "--node-rank", "1",
              "--master-addr", "10.0.0.5", "--master-port", "29600")
    joined = " ".join(cmd)
    assert "--no_ssh --num_nodes 2 --node_rank 1 --master_addr 10.0.0.5 --master_port 29600" in joined
    assert joined.endswith("--deepspeed " + str(REPO / "deepspeed/zero3_offload.json"))
    acc = " ".join(dry("sft", DEMO, "--gpus", "8", "--nodes", "2", "--node-rank", "0", "--master-addr", "h"))
    assert "--num_processes 16 --num_machines 2" in acc and "--machine_rank 0 --main_process_ip h" in acc


@pytest.mark.parametrize("args,message", [
    (["train", DEMO], "first argument must be sft or dpo"),
    (["sft", "missing.yaml"], "not found"),
    (["sft", DEMO, "--zero", "4"], "--zero must be 2, 3 or 3-offload"),
    (["sft", DEMO, "--nodes", "2", "--node-rank", "2"], "--node-rank must be in 0..1"),
    (["sft", DEMO, "--lr", "1"], "unknown option '--lr'"),
    (["sft", DEMO, "--fsdp", "--zero", "3"], "--fsdp and --zero are two ways to shard the same model"),
])
def test_bad_arguments(args, message):
    proc = subprocess.run([LAUNCH, *args, "--dry-run"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and message in proc.stderr


@pytest.mark.slow  # multi-process, over 30 s on 2 cores: `make test-slow`
def test_launch_trains_with_zero3_on_two_cpu_processes(tiny_bases, tmp_path):
    out = tmp_path / "out"
    path = write_config(tmp_path / "c.yaml", base_config(tiny_bases["gpt_neox"], out, max_steps=2))
    proc = subprocess.run([LAUNCH, "sft", str(path), "--gpus", "2", "--zero", "3", "--master-port", "29611"],
                          cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.splitlines()[0].startswith("env DS_ACCELERATOR=cpu deepspeed --num_gpus 2")
    record = json.loads((out / "run_info.json").read_text())
    assert record["world_size"] == 2 and record["distributed_type"] == "DEEPSPEED"


@pytest.mark.parametrize("path", sorted((REPO / "deepspeed").glob("*.json")), ids=lambda p: p.name)
def test_shipped_deepspeed_configs(path):
    conf = json.loads(path.read_text())  # komt shipped invalid JSON for months: parse every file
    stage = conf["zero_optimization"]["stage"]
    assert stage in (2, 3)
    for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "train_batch_size"):
        assert conf[key] == "auto", key  # HF fills them from the training config
    if stage == 3:
        assert conf["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    if "offload" in path.name:
        z = conf["zero_optimization"]
        assert z["offload_optimizer"]["device"] == z["offload_param"]["device"] == "cpu"
        assert z["offload_optimizer"]["pin_memory"] and z["offload_param"]["pin_memory"]


@pytest.mark.parametrize("path", sorted((REPO / "configs" / "accelerate").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_accelerate_configs(path):
    text = path.read_text()
    assert text.startswith("#") and "accelerate launch --config_file" in text
    conf = yaml.safe_load(text)
    assert conf["distributed_type"] in ("MULTI_GPU", "DEEPSPEED", "FSDP")
    if conf["distributed_type"] == "FSDP":  # accelerate's own FSDP config file, read the way accelerate reads it
        from accelerate.commands.config.config_args import load_config_from_file

        assert load_config_from_file(str(path)).fsdp_config["fsdp_version"] == 2
    ds = (conf.get("deepspeed_config") or {}).get("deepspeed_config_file")
    if ds:
        assert (REPO / ds).is_file(), ds
    assert conf["num_processes"] >= conf["num_machines"] >= 1


def test_accelerate_config_set_is_complete():
    names = {p.stem for p in (REPO / "configs" / "accelerate").glob("*.yaml")}
    assert {"ddp", "zero2", "zero3", "zero3_offload", "multinode", "fsdp2"} <= names
