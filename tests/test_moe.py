"""Mixture-of-Experts bases under kotune's defaults: LoRA trains with no extra key, the router is never adapted
(every adapter key checked), routed experts are adapted only through `lora_target_parameters`, the log says which
expert weights carry an adapter, and the router's auxiliary loss runs at the model's own coefficient."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import base_config, run_sft_inprocess, write_config

MOE_FAMILIES = ["exaone_moe", "deepseek_v3", "axk1", "solar_open", "qwen3_moe", "qwen3_5_moe"]


@pytest.fixture(scope="module")
def moe_bases(tmp_path_factory):
    from kotune.testing.tiny import tiny_base

    root = tmp_path_factory.mktemp("moe")
    return {arch: tiny_base(arch, root / arch, init_std=0.2) for arch in MOE_FAMILIES}


def moe_run(base, tmp_path, **extra):
    """SFT through train/sft.py with kotune's LoRA defaults (dropout 0.05, no target keys)."""
    out = tmp_path / "out"
    cfg = base_config(base, out, max_steps=6, prompt_format="komt", **extra)
    cfg.pop("lora_dropout")
    assert run_sft_inprocess(write_config(tmp_path / "c.yaml", cfg)) == 0
    return out


def router_paths(base) -> list[str]:
    from transformers import AutoConfig

    from kotune.models.architectures import auto_class
    from kotune.models.moe import router_names

    with torch.device("meta"):
        model = auto_class(AutoConfig.from_pretrained(base)).from_config(AutoConfig.from_pretrained(base))
    return router_names(model)


def losses_of(out) -> list[float]:
    return [h["loss"] for h in json.loads((out / "trainer_state.json").read_text())["log_history"] if "loss" in h]


@pytest.mark.parametrize("arch", MOE_FAMILIES)
def test_default_lora_trains_and_never_adapts_the_router(arch, moe_bases, tmp_path, caplog):
    base = moe_bases[arch]
    routers = router_paths(base)
    assert routers  # each tiny model really has routed experts behind a router
    with caplog.at_level("INFO"):
        out = moe_run(base, tmp_path)
    adapter = load_file(out / "adapter_model.safetensors")
    assert adapter
    for key in adapter:  # every adapter key: none on a router, none on the fused routed experts
        assert not any(f"{r}." in key for r in routers), key
        assert ".experts." not in key, key
    config = json.loads((out / "adapter_config.json").read_text())
    assert not config.get("target_parameters")
    assert "gate" not in (config["target_modules"] if isinstance(config["target_modules"], list) else [])
    shared = any("shared_expert" in k for k in adapter)
    assert f"expert weights adapted: {'shared experts' if shared else 'none'}" in caplog.text
    assert "the router is never adapted" in caplog.text
    losses = losses_of(out)
    assert torch.isfinite(torch.tensor(losses)).all() and len(losses) == 6


def test_routed_expert_lora_adapts_the_fused_experts_and_reloads(moe_bases, tmp_path, caplog):
    """`lora_target_parameters: experts` puts LoRA on every layer's fused routed experts (PEFT's ParamWrapper, which
    has no dropout: kotune sets 0 and says so); the router stays untouched, training moves the experts' adapters,
    and the saved adapter reloads for inference with the same logits."""
    from kotune.inference.loading import load_for_inference

    base = moe_bases["solar_open"]
    with caplog.at_level("INFO"):
        out = moe_run(base, tmp_path, lora_target_parameters=["experts"])
    assert "lora_dropout 0.05 → 0" in caplog.text
    assert "expert weights adapted: routed experts and shared experts" in caplog.text
    config = json.loads((out / "adapter_config.json").read_text())
    assert set(config["target_parameters"]) == {"mlp.experts.gate_up_proj", "mlp.experts.down_proj"}
    adapter = load_file(out / "adapter_model.safetensors")
    routers = router_paths(base)
    assert not [k for k in adapter if any(f"{r}." in k for r in routers)]
    expert_b = {k: t for k, t in adapter.items() if ".experts." in k and "lora_B" in k}
    assert expert_b and all(t.abs().sum() > 0 for t in expert_b.values())  # lora_B starts at zero: they trained

    model, tokenizer = load_for_inference(out)
    ids = tokenizer("대한민국의 수도는 서울입니다.", return_tensors="pt")["input_ids"]
    again, _ = load_for_inference(out)
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, again(ids).logits)
        model.disable_adapter_layers()
        plain = model(ids).logits
        model.enable_adapter_layers()
        assert not torch.allclose(plain, again(ids).logits)  # the reloaded adapter is really applied


def test_the_router_is_refused_by_name(moe_bases, tmp_path, capsys):
    """Naming the router in lora_target_parameters is one clear error, before any training."""
    out = tmp_path / "out"
    cfg = base_config(moe_bases["qwen3_moe"], out, max_steps=2, lora_target_parameters=["mlp.gate.weight"])
    assert run_sft_inprocess(write_config(tmp_path / "c.yaml", cfg)) == 2
    assert not out.exists()
    err = capsys.readouterr().err
    assert "lora_target_parameters: mlp.gate.weight is the router" in err and "Traceback" not in err


def test_router_aux_loss_uses_the_models_coefficient(moe_bases, tmp_path, caplog):
    """Qwen3-MoE has a load-balancing loss (router_aux_loss_coef 0.001 in its config): training turns it on at that
    coefficient, so the logged loss is the LM loss plus 0.001 x the aux loss; DeepSeek-style bases have none."""
    from transformers import AutoConfig, AutoModelForCausalLM

    base = moe_bases["qwen3_moe"]
    (tmp_path / "q").mkdir()
    (tmp_path / "d").mkdir()
    with caplog.at_level("INFO"):
        moe_run(base, tmp_path / "q")
        moe_run(moe_bases["deepseek_v3"], tmp_path / "d")
    assert "router auxiliary loss on, coefficient 0.001 (the model's own router_aux_loss_coef)" in caplog.text
    assert "no router auxiliary loss: deepseek_v3" in caplog.text
    config = AutoConfig.from_pretrained(base)
    config.output_router_logits = True
    model = AutoModelForCausalLM.from_pretrained(base, config=config)
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    out = model(ids, labels=ids)
    lm_only = torch.nn.functional.cross_entropy(out.logits[0, :-1], ids[0, 1:])
    torch.testing.assert_close(out.loss, lm_only + 0.001 * out.aux_loss)


def test_qlora_says_the_fused_experts_stay_16_bit(moe_bases, tmp_path, caplog):
    """bitsandbytes quantizes linear layers only: under QLoRA the fused routed experts keep their dtype, and the log
    says how many parameters that is; training still runs with the router untouched."""
    with caplog.at_level("INFO"):
        out = moe_run(moe_bases["solar_open"], tmp_path, load_in_4bit=True)
    assert "QLoRA on MoE: the fused routed experts stay in float32" in caplog.text
    assert "bitsandbytes quantizes only the linear layers" in caplog.text
    routers = router_paths(moe_bases["solar_open"])
    assert not [k for k in load_file(out / "adapter_model.safetensors") if any(f"{r}." in k for r in routers)]
