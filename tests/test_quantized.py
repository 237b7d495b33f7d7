"""4-bit/8-bit bases on CPU: quantized layers really are bitsandbytes', and LoRA gradients survive an eval pass."""

from __future__ import annotations

import pytest
import torch

from conftest import base_config
from kotune.config import build_config
from kotune.models.loading import load_model, load_tokenizer


def _build(tiny_bases, tmp_path, arch, **quant):
    cfg = build_config(base_config(tiny_bases[arch], tmp_path / "o", **quant))
    tok = load_tokenizer(str(tiny_bases[arch]))
    torch.manual_seed(0)
    return load_model(cfg.model, cfg.training, tok), tok


def _lora_grads(model, batch):
    model.train()
    model.zero_grad()
    model(**batch).loss.backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("arch", ["llama", "gpt_neox"])
def test_qlora_gradients_unchanged_by_an_eval_pass(arch, tiny_bases, tmp_path):
    import bitsandbytes as bnb

    model, tok = _build(tiny_bases, tmp_path, arch, load_in_4bit=True)
    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert layers and all(m.weight.quant_state.quant_type == "nf4" for m in layers)
    assert all(m.weight.quant_state.nested for m in layers)  # double quantization
    ids = tok("오늘 날씨가 정말 좋네요. 산책하러 갈까요?", return_tensors="pt")["input_ids"]
    batch = {"input_ids": ids, "labels": ids}
    # lora_B starts at zero, so lora_A has no gradient yet: give B a value first.
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    before = _lora_grads(model, batch)
    model.eval()
    with torch.no_grad():
        model(input_ids=ids)  # what trainer.evaluate() or generate() does
    after = _lora_grads(model, batch)
    for name in before:
        torch.testing.assert_close(after[name], before[name], msg=name)


def test_8bit_layers_are_int8(tiny_bases, tmp_path):
    import bitsandbytes as bnb

    model, _ = _build(tiny_bases, tmp_path, "mistral", load_in_8bit=True)
    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear8bitLt)]
    assert layers and all(m.weight.dtype == torch.int8 for m in layers)


def test_the_guard_matters_on_avx512_bf16_cpus(tiny_bases, tmp_path):
    """Without kotune's fix the same check fails on this CPU type: the test above is not vacuous."""
    import bitsandbytes as bnb
    from bitsandbytes.nn.modules import has_avx512bf16

    if not has_avx512bf16():
        pytest.skip("this CPU has no AVX512-bf16; the repack never happens here")
    model, tok = _build(tiny_bases, tmp_path, "llama", load_in_4bit=True)
    for m in model.modules():
        if isinstance(m, bnb.nn.Linear4bit):
            m.support_avx512bf16_for_cpu = True  # undo the fix
    ids = tok("오늘 날씨가 정말 좋네요.", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    before = _lora_grads(model, {"input_ids": ids, "labels": ids})
    model.eval()
    with torch.no_grad():
        model(input_ids=ids)
    try:
        after = _lora_grads(model, {"input_ids": ids, "labels": ids})
    except RuntimeError:
        return  # the other symptom: autograd refuses the repacked weights
    assert any(not torch.allclose(after[n], before[n]) for n in before)
