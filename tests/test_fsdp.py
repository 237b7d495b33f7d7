"""FSDP2 (torch's fully_shard through accelerate) on 2 CPU processes over gloo: the config it takes and refuses, the
block classes each family shards by, sharded checkpoints that resume, and runs that match DDP.

The runs are `slow` (each launch starts 2 processes: ~30-45 s on 2 cores); the config, registry and checkpoint
tests are in the default suite.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import REPO, base_config, kill_tree, loss_curve, run_launcher, subprocess_env, wait_for, write_config

ACCELERATE = str(Path(sys.executable).with_name("accelerate"))
CPU_2PROC = str(REPO / "configs/accelerate/cpu_2proc.yaml")
FSDP2 = str(REPO / "configs/accelerate/fsdp2.yaml")


def problems_of(cfg: dict, stage: str = "sft") -> list[str]:
    from kotune.config.validation import check_config

    return check_config(cfg, stage, check_paths=False)[-1]


def test_fsdp_version_key_runs_fsdp2_with_sharded_checkpoints(tiny_bases, tmp_path):
    """axolotl's `fsdp_version: 2` and TRL's `fsdp: true` both give transformers an FSDP2 plugin; kotune's default
    keeps checkpoints sharded, and the user's own fsdp_config keys (accelerate's `fsdp_` prefix too) are kept."""
    from kotune.config.validation import build_config

    for raw in ({"fsdp_version": 2}, {"fsdp": True, "fsdp_config": {"fsdp_offload_params": True}}):
        cfg = build_config(base_config(tiny_bases["gpt_neox"], tmp_path / "o", **raw))
        plugin = cfg.training.fsdp_plugin_args  # what accelerate's FSDP plugin is built from
        assert cfg.training.fsdp is True
        assert plugin["fsdp_version"] == 2 and plugin["state_dict_type"] == "SHARDED_STATE_DICT"
    assert plugin["cpu_offload"] is True  # accelerate's name, fsdp_offload_params, reaches transformers' cpu_offload
    written = build_config(base_config(tiny_bases["gpt_neox"], tmp_path / "o", fsdp_version=2,
                                       fsdp_config={"state_dict_type": "FULL_STATE_DICT"}))
    assert written.training.fsdp_plugin_args["state_dict_type"] == "FULL_STATE_DICT"


@pytest.mark.parametrize("extra, named", [
    ({"fsdp_version": 1}, "fsdp_version: 1"),
    ({"fsdp": True, "fsdp_config": {"version": 1}}, "fsdp_config.version: 1"),
    ({"fsdp_version": 2, "deepspeed": "deepspeed/zero3.json"}, "fsdp and deepspeed"),
    ({"fsdp_version": 2, "load_in_8bit": True}, "load_in_8bit cannot be combined with FSDP"),
    ({"fsdp_version": 2, "fsdp_config": {"fsdp_ofload_params": True}}, "fsdp_config.ofload_params: unknown key"),
    ({"fsdp_version": 2, "gradient_checkpointing": True, "fsdp_config": {"activation_checkpointing": True}},
     "activation_checkpointing and gradient_checkpointing"),
    ({"fsdp_version": 2, "load_in_4bit": True, "dtype": "bfloat16", "bnb_4bit_quant_storage": "uint8"},
     "bnb_4bit_quant_storage (uint8) must equal dtype (bfloat16) under FSDP"),
])
def test_what_fsdp_cannot_combine_is_refused_by_name(extra, named, tmp_path):
    cfg = base_config("some/base", tmp_path / "o", **extra)
    if "deepspeed" in extra:
        cfg["deepspeed"] = str(REPO / extra["deepspeed"])
    assert any(named in p for p in problems_of(cfg)), problems_of(cfg)


def test_fsdp_qlora_gets_quant_storage_in_the_compute_dtype(tmp_path):
    from kotune.config.validation import check_config

    model = check_config(base_config("some/base", tmp_path / "o", fsdp_version=2, load_in_4bit=True,
                                     dtype="bfloat16"), "sft", check_paths=False)[2]
    assert model["bnb_4bit_quant_storage"] == "bfloat16"


def test_every_family_shards_by_its_own_block_classes():
    """For every registered family: the blocks its spec names are the ones its model stacks (every layer list that
    transformers keeps whole, `_no_split_modules`), so FSDP wraps one block at a time, vision towers included."""
    from torch import nn

    from kotune.models.architectures import ARCHITECTURES, auto_class
    from kotune.stages.fsdp import block_classes

    checked = 0
    for name, spec in ARCHITECTURES.items():
        if spec.tiny_config is None:
            continue
        config = spec.tiny_config(dict(vocab_size=300, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                       intermediate_size=64, max_position_embeddings=128, initializer_range=0.02,
                                       bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False))
        model = auto_class(config).from_config(config)
        blocks = set(block_classes(model))
        stacked = {type(m[0]).__name__ for m in model.modules() if isinstance(m, nn.ModuleList) and len(m)
                   and type(m[0]).__name__ in set(model._no_split_modules or ())}
        assert stacked and stacked <= blocks, (name, stacked, blocks)
        assert blocks <= set(model._no_split_modules), (name, blocks)
        checked += 1
    assert checked >= 17


def test_sharded_checkpoint_is_resumable_only_when_whole(tmp_path):
    """accelerate's sharded FSDP checkpoint (torch.distributed.checkpoint dirs) counts as complete; without the
    `.metadata` that DCP writes last, it does not, and resume would refuse it by name."""
    import torch.distributed.checkpoint as dcp

    from kotune.stages.checkpoints import checkpoint_problem

    ckpt = tmp_path / "checkpoint-2"
    dcp.save({"w": torch.ones(4)}, checkpoint_id=str(ckpt / "pytorch_model_fsdp_0"))
    dcp.save({"state": {"w": torch.zeros(4)}}, checkpoint_id=str(ckpt / "optimizer_0"))
    torch.save({"last_epoch": 2}, ckpt / "scheduler.pt")
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": 2}))
    assert checkpoint_problem(ckpt) is None
    (ckpt / "optimizer_0" / ".metadata").unlink()
    assert "optimizer_0/.metadata is missing" in checkpoint_problem(ckpt)


def launch_fsdp(tiny_bases, tmp_path, name, launcher_config=CPU_2PROC, **extra) -> Path:
    out = tmp_path / name
    cfg = base_config(tiny_bases["gpt_neox"], out, **{"max_steps": 4, **extra})
    run_launcher([ACCELERATE, "launch", "--config_file", launcher_config, "--num_processes", "2", str(REPO / "train/sft.py"),
                  str(write_config(tmp_path / f"{name}.yaml", cfg))])
    return out


@pytest.mark.slow  # 6 two-process runs, ~4 min on 2 cores
@pytest.mark.parametrize("method", ["full", "lora", "qlora"])
def test_fsdp2_matches_ddp_and_saves_a_loadable_model(method, tiny_bases, tmp_path):
    """FSDP2 trains the same model as DDP, and the output dir holds one whole model or adapter.

    Tolerance as for ZeRO-3 (tests/test_deepspeed.py): both sum the same fp32 gradients over 2 ranks in a different
    order (all-reduce vs reduce-scatter); measured differences here are 0 to ~1e-6."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    extra = {"full": dict(use_peft=False, learning_rate=1.0e-3), "lora": {}, "qlora": dict(load_in_4bit=True)}[method]
    ddp = launch_fsdp(tiny_bases, tmp_path, "ddp", **extra)
    fsdp = launch_fsdp(tiny_bases, tmp_path, "fsdp", fsdp_version=2, **extra)
    record = json.loads((fsdp / "run_info.json").read_text())
    assert record["distributed_type"] == "FSDP" and record["world_size"] == 2
    torch.testing.assert_close(torch.tensor(loss_curve(fsdp)), torch.tensor(loss_curve(ddp)), rtol=1e-4, atol=1e-4)
    assert loss_curve(fsdp)[-1] < loss_curve(fsdp)[0]
    weights = "model.safetensors" if method == "full" else "adapter_model.safetensors"
    saved, reference = load_file(fsdp / weights), load_file(ddp / weights)
    assert saved.keys() == reference.keys()
    for key in saved:  # whole tensors (not one rank's shard), with the trained values
        assert saved[key].shape == reference[key].shape
        torch.testing.assert_close(saved[key], reference[key], rtol=1e-3, atol=5e-4)
    base = AutoModelForCausalLM.from_pretrained(tiny_bases["gpt_neox"])
    if method == "full":
        model = AutoModelForCausalLM.from_pretrained(fsdp)
        assert any(not torch.equal(p, base.state_dict()[n]) for n, p in model.state_dict().items())
    else:
        model = PeftModel.from_pretrained(base, fsdp)
        assert all(t.abs().sum() > 0 for k, t in saved.items() if "lora_B" in k)
    assert torch.isfinite(model(input_ids=torch.tensor([[5, 6, 7, 8]])).logits).all()


@pytest.mark.slow  # three two-process runs, ~2.5 min
def test_fsdp2_resumes_after_kill_9_to_the_same_weights(tiny_bases, tmp_path):
    """kill -9 of the whole launch after a sharded checkpoint, then --resume_from_checkpoint=true: the same final
    weights as a run never stopped (every rank reloads its shard, its optimizer shard and its RNG state)."""
    cfg = dict(use_peft=False, learning_rate=1.0e-3, max_steps=24, save_strategy="steps", save_steps=3,
               fsdp_version=2)
    straight = launch_fsdp(tiny_bases, tmp_path, "straight", **cfg)

    killed = tmp_path / "killed"
    path = write_config(tmp_path / "killed.yaml", base_config(tiny_bases["gpt_neox"], killed, **cfg))
    env = {**subprocess_env(), "DS_ACCELERATOR": "cpu"}
    proc = subprocess.Popen([ACCELERATE, "launch", "--config_file", CPU_2PROC, str(REPO / "train/sft.py"), str(path)],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        assert wait_for(lambda: (killed / "checkpoint-3" / "trainer_state.json").is_file(), proc, 300)
        kill_tree(proc)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert max(int(p.name.split("-")[1]) for p in killed.glob("checkpoint-*")) < 24
    assert not (killed / "model.safetensors").exists()
    assert (killed / "checkpoint-3" / "pytorch_model_fsdp_0" / ".metadata").is_file()  # sharded, one part per rank

    run_launcher([ACCELERATE, "launch", "--config_file", CPU_2PROC, str(REPO / "train/sft.py"), str(path),
                  "--resume_from_checkpoint=true"])
    assert json.loads((killed / "trainer_state.json").read_text())["global_step"] == 24
    a, b = load_file(straight / "model.safetensors"), load_file(killed / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # one two-process run, ~40 s
def test_accelerate_fsdp2_config_trains_lora(tiny_bases, tmp_path):
    """configs/accelerate/fsdp2.yaml (what `launch.sh --fsdp` uses): FSDP comes from the launcher, not the YAML."""
    out = launch_fsdp(tiny_bases, tmp_path, "acc", launcher_config=FSDP2)
    record = json.loads((out / "run_info.json").read_text())
    assert record["distributed_type"] == "FSDP" and record["world_size"] == 2
    adapter = load_file(out / "adapter_model.safetensors")
    assert adapter and all(t.abs().sum() > 0 for k, t in adapter.items() if "lora_B" in k)


@pytest.mark.slow  # one two-process run each, ~40 s
@pytest.mark.parametrize("use_peft", [True, False], ids=["lora", "full"])
def test_fsdp2_dpo_trains(use_peft, tiny_bases, tmp_path):
    """A preference stage under FSDP2: DPO with LoRA (the reference is the adapter switched off) and full DPO (TRL
    shards the frozen reference copy too); the output loads whole."""
    from helpers import preference_config
    from transformers import AutoModelForCausalLM

    out = tmp_path / "dpo"
    cfg = preference_config(tiny_bases["gpt_neox"], out, REPO / "src/kotune/data/sample/preference.jsonl",
                            max_steps=3, beta=0.1, fsdp_version=2, report_to=[], use_peft=use_peft,
                            **({} if use_peft else {"learning_rate": 1e-4}))
    run_launcher([ACCELERATE, "launch", "--config_file", CPU_2PROC, str(REPO / "train/dpo.py"),
                  str(write_config(tmp_path / "dpo.yaml", cfg))])
    assert json.loads((out / "run_info.json").read_text())["distributed_type"] == "FSDP"
    losses = loss_curve(out)
    assert len(losses) == 3 and losses[-1] < losses[0]
    if use_peft:
        adapter = load_file(out / "adapter_model.safetensors")
        assert all(t.abs().sum() > 0 for k, t in adapter.items() if "lora_B" in k)
    else:
        base = AutoModelForCausalLM.from_pretrained(tiny_bases["gpt_neox"]).state_dict()
        model = AutoModelForCausalLM.from_pretrained(out).state_dict()
        assert model.keys() == base.keys() and any(not torch.equal(model[k], base[k]) for k in base)
