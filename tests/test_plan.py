"""kotune plan: counts checked against real tiny models; the shipped 7B-class recipes get a sensible answer offline."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO, base_config
from kotune.config import build_config
from kotune.tools.plan import count_parameters, estimate, model_config


@pytest.mark.parametrize("use_peft", [True, False])
def test_counts_and_optimizer_bytes_match_a_real_model(use_peft, tiny_bases, tmp_path):
    from kotune.models.loading import load_model, load_tokenizer

    cfg = build_config(base_config(tiny_bases["llama"], tmp_path / "o", use_peft=use_peft))
    config = model_config(str(tiny_bases["llama"]), REPO)
    counts = count_parameters(config, cfg.model)
    model = load_model(cfg.model, cfg.training, load_tokenizer(str(tiny_bases["llama"])))
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert counts.trainable == sum(p.numel() for p in trainable)
    real_total = sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n)
    assert counts.total == real_total
    # One AdamW step on CPU: the measured optimizer state is what plan counts (two fp32 moments per parameter).
    opt = torch.optim.AdamW(trainable, lr=1e-4)
    ids = torch.randint(3, 100, (1, 8))
    model(input_ids=ids, labels=ids).loss.backward()
    grad_bytes = sum(p.grad.numel() * p.grad.element_size() for p in trainable)
    opt.step()
    state_bytes = sum(v.numel() * v.element_size() for s in opt.state.values() for v in s.values() if v.dim() > 0)
    est = estimate(cfg, counts, config, gpus=1)
    assert est["optimizer"] == state_bytes
    assert est["gradients"] == grad_bytes


@pytest.mark.parametrize("recipe,low,high", [
    ("llama-2-7b-qlora.yaml", 6.0, 9.0),        # published QLoRA 7B at 1k context: ~6–9 GB
    ("mistral-7b-v0.1-qlora.yaml", 6.0, 9.5),
    ("polyglot-ko-5.8b-qlora.yaml", 5.0, 8.5),
])
def test_recipes_plan_offline(recipe, low, high):
    kotune = str(Path(sys.executable).with_name("kotune"))
    proc = subprocess.run([kotune, "plan", f"configs/sft/{recipe}", "--gpus", "1", "--gpu-mem", "24GiB"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    total = float(next(line for line in proc.stdout.splitlines() if line.strip().startswith("total")).split()[1])
    assert low <= total <= high, proc.stdout
    assert "verdict: fits" in proc.stdout


def test_full_finetune_7b_does_not_fit_one_24g_gpu_but_zero3_on_8_does():
    kotune = str(Path(sys.executable).with_name("kotune"))
    args = [kotune, "plan", "configs/sft/llama-2-7b-qlora.yaml", "--gpu-mem", "24GiB", "--load_in_4bit=false",
            "--use_peft=false"]
    one = subprocess.run(args + ["--gpus", "1"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert one.returncode == 1 and "does NOT fit" in one.stdout and "to fit:" in one.stdout
    eight = subprocess.run(args + ["--gpus", "8", "--deepspeed=deepspeed/zero3.json", "--per_device_train_batch_size=1"],
                           cwd=REPO, capture_output=True, text=True, timeout=120)
    assert "ZeRO-3" in eight.stdout and "DeepSpeed's estimate" in eight.stdout


@pytest.mark.parametrize("folder", sorted((REPO / "configs" / "models").glob("*/")), ids=lambda p: p.name)
def test_shipped_base_configs_load(folder):
    from transformers import AutoConfig

    from kotune.models.architectures import GENERIC, offline_config_dir, spec_for

    config = AutoConfig.from_pretrained(folder)
    assert spec_for(config.model_type) is not GENERIC and config.get_text_config().vocab_size > 0
    assert folder.name in {offline_config_dir(h) for s in __import__("kotune.models.architectures", fromlist=["x"])
                           .ARCHITECTURES.values() for h in s.offline_configs}  # the registry points at it


# Mixture-of-Experts: total and active parameters from the offline configs, checked against each model card's
# published figures (Qwen3-30B-A3B: 30.5 B / 3.3 B; K-EXAONE: 236 B / 23 B; Solar-Open-100B: 102.6 B / 12 B).
@pytest.mark.parametrize("hub_id,total_b,active_b", [
    ("Qwen/Qwen3-30B-A3B", 30.5, 3.3),
    ("LGAI-EXAONE/K-EXAONE-236B-A23B", 236.0, 23.0),
    ("upstage/Solar-Open-100B", 102.6, 12.0),
])
def test_moe_total_and_active_parameters_match_the_model_cards(hub_id, total_b, active_b):
    from types import SimpleNamespace

    config = model_config(hub_id, REPO)
    counts = count_parameters(config, SimpleNamespace(use_peft=False))
    assert counts.total / 1e9 == pytest.approx(total_b, rel=0.01)
    assert counts.active / 1e9 == pytest.approx(active_b, rel=0.04)
    chosen, routed = counts.experts_per_token
    assert chosen == config.num_experts_per_tok and routed in (128,)


@pytest.mark.parametrize("target_parameters", [None, "experts"])
def test_moe_lora_trainable_and_active_match_a_real_tiny_model(target_parameters, tmp_path):
    from kotune.models import moe
    from kotune.models.loading import load_model, load_tokenizer
    from kotune.testing.tiny import tiny_base

    base = tiny_base("qwen3_moe", tmp_path / "moe", hidden=32, layers=2, seed=0)
    extra = {"lora_target_parameters": target_parameters} if target_parameters else {}
    cfg = build_config(base_config(base, tmp_path / "o", **extra))
    counts = count_parameters(model_config(str(base), REPO), cfg.model)
    model = load_model(cfg.model, cfg.training, load_tokenizer(str(base)))
    assert counts.trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert counts.total == sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n)
    fused = [p for n, p in model.named_parameters() if "lora_" not in n and p.dim() == 3 and ".experts." in n]
    assert fused and counts.routed_experts == sum(p.numel() for p in fused)
    chosen = model.config.num_experts_per_tok
    unchosen = sum(p.numel() * (p.shape[0] - chosen) // p.shape[0] for p in fused)
    assert counts.active == counts.total - unchosen
    assert not any("lora_" in n for n in [n for n, _ in model.named_parameters()]
                   if any(f"{r}." in n for r in moe.router_names(model)))


def test_qlora_plan_on_moe_prints_active_parameters_and_16bit_experts(capsys):
    from kotune.tools.plan import run_plan

    run_plan(["configs/sft/qwen3-30b-a3b-qlora.yaml"], gpus=1)
    out = capsys.readouterr().out
    assert "30.53 B total" in out and "3.35 B active per token (8 of 128 routed experts" in out
    # 28.99 B fused expert parameters at bf16: bitsandbytes leaves them unquantized
    assert "QLoRA keeps 58.0 GB of expert weights in 16-bit" in out
    weights = float(next(line for line in out.splitlines() if line.strip().startswith("weights")).split()[1])
    assert weights > 58.0e9 / 2**30  # the experts alone, so the weights term is at least that


def _per_gpu(out: str) -> float:
    return float(next(line for line in out.splitlines() if line.strip().startswith("total")).split()[1])


@pytest.mark.slow  # a 7B model built on the meta device, counted twice: ~15 s of CPU
def test_plan_knows_fsdp2_beside_zero3(capsys):
    """Full fine-tuning of a 7B base on 8 GPUs: FSDP2 shards weights, gradients and AdamW state (the per-GPU total
    falls to well under a quarter of plain data parallel), ZeRO-3 is printed beside it for the same run, and CPU
    offload moves the shards to the host."""
    from kotune.config.loading import read_config
    from kotune.tools.plan import fsdp_settings, run_plan

    args = ["configs/sft/llama-2-7b-qlora.yaml", "--load_in_4bit=false", "--use_peft=false",
            "--per_device_train_batch_size=1", "--fsdp_version=2"]
    run_plan(args, gpus=8, gpu_mem="24GiB")
    out = capsys.readouterr().out
    fsdp = _per_gpu(out)
    assert "FSDP2, 8 GPU(s)" in out and "verdict: fits" in out
    zero3 = float(out.split("the same run under ZeRO-3 (no offload): ")[1].split()[0])
    assert 0.7 < fsdp / zero3 < 1.5  # the same model states sharded the same way; FSDP2 also holds gathered blocks

    cfg = build_config(read_config(args)[1], check_paths=False)
    config = model_config(cfg.model.model_name_or_path)
    counts = count_parameters(config, cfg.model)
    assert fsdp_settings(cfg.training) == {"reshard": True, "offload": False}
    ddp = estimate(cfg, counts, config, 8)
    sharded = estimate(cfg, counts, config, 8, fsdp=fsdp_settings(cfg.training))
    offload = estimate(cfg, counts, config, 8, fsdp={"reshard": True, "offload": True})
    assert abs(sharded["per_gpu"] / 2**30 - fsdp) < 0.01 and sharded["per_gpu"] < ddp["per_gpu"] / 4
    assert offload["host"] > 8 * (sharded["optimizer"] + sharded["gradients"]) * 0.99
    assert offload["per_gpu"] < sharded["per_gpu"] / 3
