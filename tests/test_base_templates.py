"""A base's own chat template: kept byte for byte under `prompt_format: auto`, its end-of-turn token learned (and no
extra EOS after it), and generation stops there. The tokenizer is built here with Llama-3's special tokens and
template over a small Korean BPE (no real Llama-3 tokenizer ships in a PyPI package this suite installs)."""

from __future__ import annotations

import json

import pytest

from conftest import base_config, run_sft_inprocess, write_config
from kotune.data.prompt_formats import end_of_turn_ids, resolve_format

LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' + m['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)
ROWS = [{"instruction": "대한민국의 수도는 어디인가요?", "output": "서울입니다."},
        {"instruction": "일본의 수도는 어디인가요?", "output": "도쿄입니다."},
        {"instruction": "물은 몇 도에서 끓나요?", "output": "100도에서 끓습니다."},
        {"instruction": "산소의 원소 기호는?", "output": "O입니다."}]


@pytest.fixture(scope="module")
def llama3_like(tmp_path_factory):
    from kotune.testing.tiny import korean_bpe_tokenizer, tiny_model

    out = tmp_path_factory.mktemp("llama3")
    tok = korean_bpe_tokenizer(out)
    tok.add_special_tokens({"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>",
                            "additional_special_tokens": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]})
    tok.chat_template = LLAMA3_TEMPLATE
    tiny_model("llama", tok, out, hidden=64, layers=2, seed=0, init_std=0.2)
    return out, tok


def test_auto_keeps_the_bases_template_and_finds_its_end_of_turn(llama3_like):
    _, tok = llama3_like
    assert resolve_format("auto", "llama", "meta-llama/Llama-3.1-8B-Instruct", tok) is None  # a Hub id too
    assert end_of_turn_ids(tok) == [tok.convert_tokens_to_ids("<|eot_id|>")]


def test_end_of_turn_is_learned_and_generation_stops_there(llama3_like, tmp_path):
    import torch

    from kotune.inference.generate import answer
    from kotune.inference.loading import load_for_inference

    base, tok = llama3_like
    data = tmp_path / "qa.jsonl"
    data.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in ROWS) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    cfg = base_config(base, out, dataset_mixture={"datasets": [{"id": str(data), "format": "instruction"}]},
                      use_peft=False, learning_rate=3.0e-3, max_steps=40, per_device_train_batch_size=4)
    assert run_sft_inprocess(write_config(tmp_path / "c.yaml", cfg)) == 0

    saved = json.loads((out / "tokenizer_config.json").read_text()).get("chat_template") \
        or (out / "chat_template.jinja").read_text()
    assert saved == LLAMA3_TEMPLATE  # byte for byte, not overwritten by Llama-2's [INST]
    eot, eos = tok.convert_tokens_to_ids("<|eot_id|>"), tok.eos_token_id
    generation = json.loads((out / "generation_config.json").read_text())
    assert set(generation["eos_token_id"]) == {eot, eos}  # the base's EOS plus the end-of-turn token

    from helpers import encode_conversation

    ids, labels = encode_conversation(tok, [{"role": "user", "content": ROWS[0]["instruction"]},
                                            {"role": "assistant", "content": ROWS[0]["output"]}])
    trained = [i for i, label in zip(ids, labels) if label != -100]
    assert trained[-1] == eot and eos not in trained  # the turn ends as the template ends it, no EOS after

    model, tokenizer = load_for_inference(out)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": ROWS[0]["instruction"]}],
                                           add_generation_prompt=True, tokenize=False)
    prompt_ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        generated = model.generate(input_ids=prompt_ids, attention_mask=torch.ones_like(prompt_ids),
                                   max_new_tokens=30, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    new = generated[0, prompt_ids.shape[1]:].tolist()
    assert new[-1] == eot and len(new) < 30, tokenizer.decode(new)  # stopped at end-of-turn, from the saved config
    assert answer(model, tokenizer, ROWS[0]["instruction"]) == ROWS[0]["output"]
