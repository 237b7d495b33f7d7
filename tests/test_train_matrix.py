"""Every architecture × method trains through the real train/sft.py: loss goes down, weights change, outputs reload."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import ARCHS, base_config, run_sft_inprocess, write_config

METHODS = {
    "qlora4": {"use_peft": True, "load_in_4bit": True},
    "lora8": {"use_peft": True, "load_in_8bit": True},
    "lora": {"use_peft": True},
    "full": {"use_peft": False, "learning_rate": 3.0e-3},
}


def losses(out):
    state = json.loads((out / "trainer_state.json").read_text())
    return [h["loss"] for h in state["log_history"] if "loss" in h]


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("arch", ARCHS)
def test_sft_trains_and_reloads(arch, method, tiny_bases, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "out"
    cfg = base_config(tiny_bases[arch], out, max_steps=8, **METHODS[method])
    assert run_sft_inprocess(write_config(tmp_path / "c.yaml", cfg)) == 0

    curve = losses(out)
    assert len(curve) == 8 and all(map(torch.isfinite, torch.tensor(curve)))
    assert sum(curve[-2:]) / 2 < sum(curve[:2]) / 2, curve  # loss went down

    for name in ["tokenizer_config.json", "kotune_config.yaml", "run_info.json", "trainer_state.json", "loss.png",
                 "generation_config.json", "data_report.json"]:
        assert (out / name).is_file(), name
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.chat_template and tok.pad_token_id != tok.eos_token_id
    gen = json.loads((out / "generation_config.json").read_text())
    assert gen["eos_token_id"] == tok.eos_token_id and gen["pad_token_id"] == tok.pad_token_id

    base = AutoModelForCausalLM.from_pretrained(tiny_bases[arch])
    if method == "full":
        assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()
        trained = AutoModelForCausalLM.from_pretrained(out)
        changed = [n for n, p in trained.state_dict().items() if not torch.equal(p, base.state_dict()[n])]
        assert len(changed) > len(base.state_dict()) // 2  # parameters changed
        model = trained
    else:
        from peft import PeftModel

        tensors = load_file(out / "adapter_model.safetensors")
        lora_b = [t for n, t in tensors.items() if "lora_B" in n]
        assert lora_b and all(t.numel() > 0 for t in tensors.values())
        assert any(t.abs().sum() > 0 for t in lora_b)  # lora_B starts at zero: non-zero means it trained
        model = PeftModel.from_pretrained(base, out)
    model.eval()
    prompt = tok.apply_chat_template([{"role": "user", "content": "안녕하세요?"}], add_generation_prompt=True,
                                     tokenize=False)
    ids = tok(prompt, add_special_tokens=False, return_tensors="pt")
    gen_ids = model.generate(**ids, max_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id)
    assert gen_ids.shape[1] > ids["input_ids"].shape[1]


@pytest.mark.parametrize("arch,method", [("gpt_neox", "lora"), ("llama", "qlora4"), ("mistral", "full")])
def test_gradient_checkpointing_trains(arch, method, tiny_bases, tmp_path):
    out = tmp_path / "out"
    cfg = base_config(tiny_bases[arch], out, max_steps=4, gradient_checkpointing=True, **METHODS[method])
    assert run_sft_inprocess(write_config(tmp_path / "c.yaml", cfg)) == 0
    curve = losses(out)
    assert len(curve) == 4 and curve[-1] < curve[0], curve
