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
    assert spec_for("olmo2") is GENERIC and GENERIC.targets() == "all-linear"  # other bases: never refused
    assert spec_for("llama").targets(["q_proj"]) == ["q_proj"]  # the user's targets win
    assert spec_for("exaone").targets()[-3:] == ["c_fc_0", "c_fc_1", "c_proj"]  # EXAONE 3.5's own module names
    gemma = spec_for("gemma3").targets()  # image-text Gemma-3: the language model only, never the vision tower
    import re

    assert re.fullmatch(gemma, "model.language_model.layers.0.self_attn.q_proj")
    assert not re.fullmatch(gemma, "model.vision_tower.vision_model.encoder.layers.0.self_attn.q_proj")


def tiny_phi3_config(common: dict):
    from transformers import Phi3Config

    return Phi3Config(**common, num_key_value_heads=4)


def test_a_new_spec_trains_through_the_entry_script(tmp_path):
    from kotune.testing.tiny import tiny_base

    assert spec_for("phi3") is GENERIC  # not a kotune family yet
    register(ArchitectureSpec(name="phi3", model_types=("phi3",), lora_targets=("qkv_proj", "o_proj"),
                              prompt_format="komt", tiny_config=tiny_phi3_config, tiny_tokenizer="bpe"))
    try:
        base = tiny_base("phi3", tmp_path / "base", hidden=64, layers=2, seed=0, init_std=0.2)
        out = tmp_path / "out"
        cfg = base_config(base, out, max_steps=8)  # no lora_target_modules, prompt_format auto
        assert run_sft_inprocess(write_config(tmp_path / "c.yaml", cfg)) == 0
    finally:
        ARCHITECTURES.pop("phi3")

    adapter = json.loads((out / "adapter_config.json").read_text())
    assert set(adapter["target_modules"]) == {"qkv_proj", "o_proj"}  # the spec's targets, not all-linear
    tokenizer_config = json.loads((out / "tokenizer_config.json").read_text())
    template = tokenizer_config.get("chat_template") or (out / "chat_template.jinja").read_text()
    assert template == TEMPLATES["komt"]  # the spec's prompt format under `auto`
    losses = [h["loss"] for h in json.loads((out / "trainer_state.json").read_text())["log_history"] if "loss" in h]
    assert len(losses) == 8 and sum(losses[-2:]) < sum(losses[:2]), losses  # loss went down
    lora_b = [t for n, t in load_file(out / "adapter_model.safetensors").items() if "lora_B" in n]
    assert lora_b and any(t.abs().sum() > 0 for t in lora_b)  # lora_B starts at zero: it trained
    assert all(any(f".{m}." in n for m in ("qkv_proj", "o_proj"))
               for n in load_file(out / "adapter_model.safetensors"))
    assert torch.isfinite(torch.tensor(losses)).all()
