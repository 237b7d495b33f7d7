"""The architecture registry: a family is one spec, and a new spec trains through train/sft.py with no other change."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from conftest import base_config, run_sft_inprocess, write_config
from kotune.data.prompt_formats import TEMPLATES
from kotune.models.architectures import ARCHITECTURES, GENERIC, ArchitectureSpec, register, spec_for


def test_known_families_and_the_generic_fallback():
    assert spec_for("gpt_neox").targets() == ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"]  # peft#294
    assert spec_for("llama").targets() == spec_for("mistral").targets() == [
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert spec_for("exaone4") is GENERIC and GENERIC.targets() == "all-linear"  # other bases: never refused
    assert spec_for("llama").targets(["q_proj"]) == ["q_proj"]  # the user's targets win


def tiny_qwen2_config(common: dict):
    from transformers import Qwen2Config

    return Qwen2Config(**common, num_key_value_heads=2)


def test_a_new_spec_trains_through_the_entry_script(tmp_path):
    from kotune.testing.tiny import tiny_base

    register(ArchitectureSpec(name="qwen2", model_types=("qwen2",), lora_targets=("q_proj", "v_proj"),
                              prompt_format="komt", tiny_config=tiny_qwen2_config, tiny_tokenizer="bpe"))
    try:
        base = tiny_base("qwen2", tmp_path / "base", hidden=64, layers=2, seed=0, init_std=0.2)
        out = tmp_path / "out"
        cfg = base_config(base, out, max_steps=8)  # no lora_target_modules, prompt_format auto
        assert run_sft_inprocess(write_config(tmp_path / "c.yaml", cfg)) == 0
    finally:
        ARCHITECTURES.pop("qwen2")

    adapter = json.loads((out / "adapter_config.json").read_text())
    assert set(adapter["target_modules"]) == {"q_proj", "v_proj"}  # the spec's targets, not all-linear
    tokenizer_config = json.loads((out / "tokenizer_config.json").read_text())
    template = tokenizer_config.get("chat_template") or (out / "chat_template.jinja").read_text()
    assert template == TEMPLATES["komt"]  # the spec's prompt format under `auto`
    losses = [h["loss"] for h in json.loads((out / "trainer_state.json").read_text())["log_history"] if "loss" in h]
    assert len(losses) == 8 and sum(losses[-2:]) < sum(losses[:2]), losses  # loss went down
    lora_b = [t for n, t in load_file(out / "adapter_model.safetensors").items() if "lora_B" in n]
    assert lora_b and any(t.abs().sum() > 0 for t in lora_b)  # lora_B starts at zero: it trained
    assert all(any(f".{m}." in n for m in ("q_proj", "v_proj"))
               for n in load_file(out / "adapter_model.safetensors"))
    assert torch.isfinite(torch.tensor(losses)).all()
