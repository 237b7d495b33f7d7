"""Today's bases with their own chat templates (Llama-3.x, Qwen2.5/3, Gemma 2/3, EXAONE 4): the template kept byte
for byte under `prompt_format: auto`, its end-of-turn token learned (with no extra EOS after it), and generation
stops there, for a tiny model of each family built from its config class through train/sft.py.

The tokenizers are BUILT here: a small Korean BPE plus each family's special tokens and its public chat template
(no real tokenizer of these families ships in a PyPI package this suite installs). Gemma-3 runs twice: text-only
(gemma3_text) and image-text (Gemma3ForConditionalGeneration with a one-layer SigLIP tower, as 4B/12B/27B load)."""

from __future__ import annotations

import json

import pytest

from kotune.data.prompt_formats import end_of_turn_ids, resolve_format

LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' + m['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)
CHATML_TEMPLATE = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% set role = 'model' if m['role'] == 'assistant' else m['role'] %}"
    "{{ '<start_of_turn>' + role + '\\n' + m['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)
EXAONE_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ '[|system|]' + m['content'] + '[|endofturn|]\\n' }}"
    "{% elif m['role'] == 'user' %}{{ '[|user|]' + m['content'] + '\\n' }}"
    "{% else %}{{ '[|assistant|]' + m['content'] + '[|endofturn|]\\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '[|assistant|]' }}{% endif %}"
)
# family -> (template, bos, eos, other special tokens, the end-of-turn token)
FAMILIES = {
    "llama": (LLAMA3_TEMPLATE, "<|begin_of_text|>", "<|end_of_text|>", ["<|start_header_id|>", "<|end_header_id|>"],
              "<|eot_id|>"),
    "qwen2": (CHATML_TEMPLATE, None, "<|endoftext|>", ["<|im_start|>"], "<|im_end|>"),
    "gemma3_text": (GEMMA_TEMPLATE, "<bos>", "<eos>", ["<start_of_turn>"], "<end_of_turn>"),
    "gemma3": (GEMMA_TEMPLATE, "<bos>", "<eos>", ["<start_of_turn>"], "<end_of_turn>"),  # image-text Gemma-3
    "exaone4": (EXAONE_TEMPLATE, None, "[|endofturn|]", ["[|system|]", "[|user|]", "[|assistant|]"], "[|endofturn|]"),
}
from helpers import QA_ROWS as ROWS  # noqa: E402


def built_base(family: str, out):
    from kotune.testing.tiny import korean_bpe_tokenizer, tiny_model

    template, bos, eos, others, end_of_turn = FAMILIES[family]
    tok = korean_bpe_tokenizer(out)
    specials = {"eos_token": eos, "additional_special_tokens": others + ([end_of_turn] if end_of_turn != eos else [])}
    if bos:
        specials["bos_token"] = bos
    tok.add_special_tokens(specials)
    tok.chat_template = template
    tiny_model(family, tok, out, hidden=64, layers=2, seed=0, init_std=0.2)
    return out, tok


@pytest.fixture(scope="module")
def llama3_like(tmp_path_factory):
    return built_base("llama", tmp_path_factory.mktemp("llama3"))


def test_auto_keeps_the_bases_template_and_finds_its_end_of_turn(llama3_like):
    _, tok = llama3_like
    assert resolve_format("auto", "llama", "meta-llama/Llama-3.1-8B-Instruct", tok) is None  # a Hub id too
    assert end_of_turn_ids(tok) == [tok.convert_tokens_to_ids("<|eot_id|>")]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_end_of_turn_is_learned_and_generation_stops_there(family, tmp_path):
    from helpers import greedy_new_ids, train_qa
    from kotune.inference.generate import answer
    from kotune.inference.loading import load_for_inference

    base, tok = built_base(family, tmp_path / "base")
    template, _, _, _, end_of_turn = FAMILIES[family]
    out = train_qa(base, tmp_path, max_steps=40)

    saved = json.loads((out / "tokenizer_config.json").read_text()).get("chat_template") \
        or (out / "chat_template.jinja").read_text()
    assert saved == template  # byte for byte, not overwritten by a kotune format
    eot, eos = tok.convert_tokens_to_ids(end_of_turn), tok.eos_token_id
    generation = json.loads((out / "generation_config.json").read_text())
    stops = generation["eos_token_id"] if isinstance(generation["eos_token_id"], list) else [generation["eos_token_id"]]
    assert {eot, eos} <= set(stops)  # the base's EOS plus the end-of-turn token

    from helpers import encode_conversation

    ids, labels = encode_conversation(tok, [{"role": "user", "content": ROWS[0]["instruction"]},
                                            {"role": "assistant", "content": ROWS[0]["output"]}])
    trained = [i for i, label in zip(ids, labels) if label != -100]
    assert eot in trained[-2:] and (eot == eos or eos not in trained)  # ends as the template ends a turn, no EOS after

    model, tokenizer = load_for_inference(out)
    new = greedy_new_ids(model, tokenizer, ROWS[0]["instruction"])
    assert new[-1] == eot and len(new) < 30, tokenizer.decode(new)  # stopped at end-of-turn, from the saved config
    assert answer(model, tokenizer, ROWS[0]["instruction"]) == ROWS[0]["output"]


def test_image_text_gemma3_lora_trains_the_language_model_only(tmp_path):
    """Gemma-3 4B/12B load as Gemma3ForConditionalGeneration: LoRA must adapt the language model, never the SigLIP
    tower, and the saved adapter must load back onto the image-text base."""
    from peft import AutoPeftModelForCausalLM
    from safetensors.torch import load_file

    from conftest import base_config, run_sft_inprocess, write_config

    base, _ = built_base("gemma3", tmp_path / "base")
    out = tmp_path / "out"
    assert run_sft_inprocess(write_config(tmp_path / "c.yaml", base_config(base, out))) == 0
    keys = list(load_file(out / "adapter_model.safetensors"))
    assert keys and all("language_model" in k for k in keys), [k for k in keys if "language_model" not in k][:3]
    assert any(".mlp.down_proj." in k for k in keys) and any(".self_attn.q_proj." in k for k in keys)
    model = AutoPeftModelForCausalLM.from_pretrained(out)
    assert type(model.get_base_model()).__name__ == "Gemma3ForConditionalGeneration"


def exaone35_base(out):
    """A tiny EXAONE 3.5 as the Hub ships it: `model_type: exaone` with remote code (tests/fixtures/exaone_remote: our
    stand-in with EXAONE 3.5's config keys and module names), EXAONE's template and special tokens."""
    import importlib
    import shutil
    import sys
    from pathlib import Path

    from kotune.testing.tiny import korean_bpe_tokenizer

    fixtures = Path(__file__).parent / "fixtures"
    template, _, eos, others, _ = FAMILIES["exaone4"]  # EXAONE 3.5 and 4.0 share the chat template
    tok = korean_bpe_tokenizer(out)
    tok.add_special_tokens({"eos_token": eos, "additional_special_tokens": others})
    tok.chat_template = template
    sys.path.insert(0, str(fixtures))
    try:
        config_mod = importlib.import_module("exaone_remote.configuration_exaone")
        model_mod = importlib.import_module("exaone_remote.modeling_exaone")
    finally:
        sys.path.remove(str(fixtures))
    config = config_mod.ExaoneConfig(vocab_size=len(tok), eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                                     initializer_range=0.2,
                                     auto_map={"AutoConfig": "configuration_exaone.ExaoneConfig",
                                               "AutoModelForCausalLM": "modeling_exaone.ExaoneForCausalLM"})
    import torch

    torch.manual_seed(0)
    model_mod.ExaoneForCausalLM(config).save_pretrained(out)
    for name in ("configuration_exaone.py", "modeling_exaone.py"):
        shutil.copy(fixtures / "exaone_remote" / name, out / name)
    tok.save_pretrained(out)
    return out, tok


def test_exaone35_remote_code_trains_with_its_template_and_stops(tmp_path):
    """EXAONE 3.5 needs trust_remote_code (transformers 5.23 has no native `exaone`): with it, LoRA lands on the
    registry's EXAONE 3.5 targets, and a full fine-tune learns [|endofturn|] and stops there when reloaded."""
    from helpers import greedy_new_ids, train_qa
    from kotune.inference.loading import load_for_inference
    from kotune.models.architectures import spec_for

    base, tok = exaone35_base(tmp_path / "base")
    (tmp_path / "lora").mkdir()
    (tmp_path / "full").mkdir()
    lora = train_qa(base, tmp_path / "lora", max_steps=2, trust_remote_code=True, use_peft=True)
    targets = set(json.loads((lora / "adapter_config.json").read_text())["target_modules"])
    assert targets == set(spec_for("exaone").targets())
    out = train_qa(base, tmp_path / "full", max_steps=40, trust_remote_code=True)
    assert (out / "chat_template.jinja").read_text() == FAMILIES["exaone4"][0] or \
        json.loads((out / "tokenizer_config.json").read_text()).get("chat_template") == FAMILIES["exaone4"][0]
    model, tokenizer = load_for_inference(out)
    assert type(model).__module__.endswith("modeling_exaone")  # the remote code, not a native class
    new = greedy_new_ids(model, tokenizer, ROWS[0]["instruction"])
    assert new[-1] == tok.convert_tokens_to_ids("[|endofturn|]") and len(new) < 30, tokenizer.decode(new)
