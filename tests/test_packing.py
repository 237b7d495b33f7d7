"""Packing never lets one example see another: per-example losses packed == unpacked, on sdpa and eager."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import ARCHS, SAMPLE, base_config, run_sft_inprocess, write_config
from kotune.config import DatasetMixture, DatasetSource
from helpers import build_sft_dataset
from kotune.data.packing import bfd_pack, collator, useful_fraction
from helpers import example_losses
from kotune.models.loading import load_tokenizer
from kotune.data.prompt_formats import install_template


def _examples(tiny_bases, arch, n=6):
    tok = load_tokenizer(str(tiny_bases[arch]))
    install_template(tok, "komt")
    ds, _ = build_sft_dataset(DatasetMixture(datasets=[DatasetSource(id=str(SAMPLE), format="instruction")], seed=0),
                              tok, max_length=256)
    return tok, [ds[i] for i in range(n)]


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
@pytest.mark.parametrize("arch", ARCHS)
def test_per_example_loss_packed_equals_unpacked(arch, impl, tiny_bases):
    from transformers import AutoModelForCausalLM

    tok, examples = _examples(tiny_bases, arch)
    model = AutoModelForCausalLM.from_pretrained(tiny_bases[arch], attn_implementation=impl).eval()
    model.config.use_cache = False  # what kotune sets when packing
    padded = collator(tok, "padded")(examples)
    flat = collator(tok, "padding_free")(examples)
    assert flat["input_ids"].shape[0] == 1 and "attention_mask" not in flat
    assert (flat["position_ids"][0] == 0).sum() == len(examples)
    with torch.no_grad():
        a, b = example_losses(model, padded), example_losses(model, flat)
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)


def test_the_cache_trap_is_real(tiny_bases):
    """With transformers' default use_cache=True the padding-free batch leaks across examples: kotune turns it off."""
    from transformers import AutoModelForCausalLM

    tok, examples = _examples(tiny_bases, "llama")
    model = AutoModelForCausalLM.from_pretrained(tiny_bases["llama"]).train()
    assert model.config.use_cache
    flat = collator(tok, "padding_free")(examples)
    with torch.no_grad():
        leaky = model(input_ids=flat["input_ids"], position_ids=flat["position_ids"]).logits
        clean = model(input_ids=flat["input_ids"], position_ids=flat["position_ids"], use_cache=False).logits
    assert not torch.allclose(leaky, clean, atol=1e-3)


def test_packing_keeps_the_recipe(tiny_bases, tmp_path):
    """packing: true gives the same steps and, batch for batch, the same losses as padded batches."""
    curves = {}
    for packing in (False, True):
        out = tmp_path / f"p{packing}"
        cfg = base_config(tiny_bases["gpt_neox"], out, packing=packing, max_steps=5, lora_dropout=0.0)
        assert run_sft_inprocess(write_config(tmp_path / f"{packing}.yaml", cfg)) == 0
        state = json.loads((out / "trainer_state.json").read_text())
        curves[packing] = [h["loss"] for h in state["log_history"] if "loss" in h]
        assert state["global_step"] == 5
    torch.testing.assert_close(torch.tensor(curves[True]), torch.tensor(curves[False]), rtol=1e-4, atol=1e-4)


def test_bfd_bins_restart_positions_and_mask_first_tokens(tiny_bases):
    tok, examples = _examples(tiny_bases, "gpt_neox", n=12)
    from datasets import Dataset

    ds = Dataset.from_list(examples)
    packed = bfd_pack(ds, max_length=256)
    assert len(packed) < len(ds) and all(len(r["input_ids"]) <= 256 for r in packed)
    batch = collator(tok, "bfd")([packed[0]])
    starts = (batch["position_ids"][0] == 0).nonzero().flatten()
    assert len(starts) == len(packed[0]["seq_lengths"])
    assert (batch["labels"][0, starts] == -100).all()


def test_useful_fraction():
    assert useful_fraction([10, 2, 8, 8], 2, "padded") == pytest.approx(28 / 36)
    assert useful_fraction([10, 2, 8, 8], 2, "padding_free") == 1.0


def test_padding_free_collator_matches_trls_batch():
    """kotune's faster padding-free collator builds exactly TRL's tensors: keys, values and dtypes."""
    import random

    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from kotune.data.packing import PaddingFreeCollator

    rng = random.Random(0)
    examples = [{"input_ids": [rng.randrange(3, 500) for _ in range(rng.randrange(1, 40))]} for _ in range(7)]
    for ex in examples[:5]:
        ex["labels"] = [-100] * min(2, len(ex["input_ids"])) + ex["input_ids"][2:]
    ours = PaddingFreeCollator()(examples)
    trl = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)(examples)
    assert ours.keys() == trl.keys()
    for key, value in trl.items():
        if isinstance(value, torch.Tensor):
            assert ours[key].dtype == value.dtype and torch.equal(ours[key], value), key
        else:
            assert ours[key] == value, key


@pytest.mark.parametrize("arch", ["qwen2", "gemma3_text", "exaone4", "gemma3"])
def test_every_registered_family_packs_exactly(arch, tmp_path):
    """Padding-free is the default for every registered family, so each one's attention must keep packed examples
    apart: per-example losses equal the padded batch's (sdpa, use_cache off as kotune sets it)."""
    from transformers import AutoModelForCausalLM

    from kotune.testing.tiny import tiny_base

    base = tiny_base(arch, tmp_path / arch, init_std=0.2)
    tok = load_tokenizer(str(base))
    install_template(tok, "komt")
    ds, _ = build_sft_dataset(DatasetMixture(datasets=[DatasetSource(id=str(SAMPLE), format="instruction")], seed=0),
                              tok, max_length=256)
    examples = [ds[i] for i in range(4)]
    model = AutoModelForCausalLM.from_pretrained(base, attn_implementation="sdpa").eval()
    model.config.use_cache = False
    with torch.no_grad():
        padded = example_losses(model, collator(tok, "padded")(examples))
        flat = example_losses(model, collator(tok, "padding_free")(examples))
    torch.testing.assert_close(flat, padded, rtol=1e-5, atol=1e-5)


def test_packing_default_follows_the_family(caplog):
    """Left out of the config, packing is padding-free for registered families and padded (with the reason and
    how to opt in) for an unknown family or a model whose code comes from its repo."""
    from transformers import GPTNeoXConfig, LlamaConfig

    from kotune.data.packing import default_packing

    assert default_packing(GPTNeoXConfig(), trust_remote_code=False) is True
    assert default_packing(LlamaConfig(), trust_remote_code=True) is True  # transformers' own code
    unknown = LlamaConfig()
    unknown.model_type = "my_new_arch"
    assert default_packing(unknown, trust_remote_code=False) is False
    remote = LlamaConfig()
    remote.auto_map = {"AutoModelForCausalLM": "modeling_x.XForCausalLM"}
    with caplog.at_level("INFO", logger="kotune.data.packing"):
        assert default_packing(remote, trust_remote_code=True) is False
    assert "set packing: true" in caplog.text
