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


def packing_families() -> list[str]:
    """Every registered family with a tiny config whose packing is on by default, beyond the ARCHS tested above."""
    from kotune.models.architectures import ARCHITECTURES

    return [n for n, s in ARCHITECTURES.items() if s.tiny_config and not s.padded_because and n not in ARCHS]


def padded_families() -> list[str]:
    from kotune.models.architectures import ARCHITECTURES

    return [n for n, s in ARCHITECTURES.items() if s.tiny_config and s.padded_because]


def short_windows(model, window: int = 8) -> None:
    """Sliding-window layers with an 8-token window, so the packed examples (20-60 tokens) cross it."""
    for config in (model.config, getattr(model.config, "text_config", None)):
        if config is not None and getattr(config, "sliding_window", None):
            config.sliding_window = window


def family_examples(arch, tmp_path, n: int = 4):
    from kotune.models.architectures import auto_class
    from kotune.testing.tiny import tiny_base

    base = tiny_base(arch, tmp_path / arch, layers=4, init_std=0.2)  # 4 layers: local/linear and full kinds both
    tok = load_tokenizer(str(base))
    install_template(tok, "komt")
    ds, _ = build_sft_dataset(DatasetMixture(datasets=[DatasetSource(id=str(SAMPLE), format="instruction")], seed=0),
                              tok, max_length=256)
    from transformers import AutoConfig

    model = auto_class(AutoConfig.from_pretrained(base)).from_pretrained(base, attn_implementation="sdpa").eval()
    model.config.use_cache = False
    short_windows(model)
    return tok, [ds[i] for i in range(n)], model


@pytest.mark.parametrize("arch", packing_families())
def test_every_registered_family_packs_exactly(arch, tmp_path):
    """Padding-free is the default for these families, so each one's attention must keep packed examples apart:
    per-example losses equal the padded batch's (sdpa, use_cache off as kotune sets it), sliding-window layers
    included (an 8-token window inside 20-60-token examples), MoE routing included."""
    tok, examples, model = family_examples(arch, tmp_path)
    assert max(len(e["input_ids"]) for e in examples) > 16
    with torch.no_grad():
        padded = example_losses(model, collator(tok, "padded")(examples))
        flat = example_losses(model, collator(tok, "padding_free")(examples))
    torch.testing.assert_close(flat, padded, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", padded_families())
def test_a_family_that_cannot_pack_stays_padded_with_the_reason(arch, tmp_path, caplog):
    """Packed rows that leak, so kotune keeps padded batches and logs why. Qwen3.5's gated-delta layers: without the
    causal-conv1d and flash-linear-attention kernels transformers refuses a packed row with its example boundaries,
    and with position_ids alone the recurrent state runs from one example into the next. A.X K2's indexer picks
    keys from the whole packed row. Either way the later examples' losses differ from padded."""
    from kotune.data.packing import default_packing
    from kotune.models.architectures import get_spec

    tok, examples, model = family_examples(arch, tmp_path, n=2)
    with caplog.at_level("INFO", logger="kotune.data.packing"):
        assert default_packing(model.config, trust_remote_code=False) is False
    assert get_spec(arch).padded_because in caplog.text and "set packing: true" in caplog.text
    packed = collator(tok, "padding_free")(examples)
    with torch.no_grad():
        padded = example_losses(model, collator(tok, "padded")(examples))
        assert torch.isfinite(padded).all()
        if arch.startswith("qwen3_5"):
            with pytest.raises(ValueError, match="can't keep packed sequences apart"):
                model(**{k: v for k, v in packed.items() if k != "labels"}, use_cache=False)
        leaked = example_losses(model, packed)  # position_ids only: the fallback kernels run across the boundary
    if arch.startswith("qwen3_5"):
        assert torch.allclose(leaked[0], padded[0], atol=1e-5)  # the first example sees nothing before it
    assert not torch.allclose(leaked[1:], padded[1:], atol=1e-3)


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
