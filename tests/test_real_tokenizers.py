"""Real tokenizers of today's bases, offline: Llama-3's and Qwen2's vocab-only GGUF files from llama.cpp's PyPI
source distribution (`make vocab` extracts them to $KOTUNE_GGUF_VOCAB), read by transformers' GGUF reader.

For each: the round trip (inference prompt ids equal the masked prefix of a training example), labels on assistant
turns only (multi-turn included), and a tiny model of the family trained on that vocabulary that stops at the
template's end-of-turn token. Qwen2's GGUF carries its ChatML template; Llama-3's carries none, so the test writes
Llama-3's public template."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from test_base_templates import LLAMA3_TEMPLATE, ROWS

VOCAB = Path(os.environ.get("KOTUNE_GGUF_VOCAB", Path.home() / ".cache" / "kotune" / "gguf_vocab"))
# family -> (GGUF file, chat template to write (None: the file's own), end-of-turn token)
REAL = {"llama": ("ggml-vocab-llama-bpe.gguf", LLAMA3_TEMPLATE, "<|eot_id|>"),
        "qwen2": ("ggml-vocab-qwen2.gguf", None, "<|im_end|>")}
TURNS = [{"role": "system", "content": "당신은 친절한 한국어 비서입니다."},
         {"role": "user", "content": "대한민국의 수도는 어디인가요?"}, {"role": "assistant", "content": "서울입니다."},
         {"role": "user", "content": "일본은요?"}, {"role": "assistant", "content": "도쿄입니다."}]


@pytest.fixture(scope="module", params=list(REAL))
def real_base(request, tmp_path_factory):
    """(family, a model dir holding the real tokenizer (as tokenizer.json) and a tiny random model of the family)."""
    from transformers import PreTrainedTokenizerFast

    from kotune.testing.tiny import tiny_model

    family = request.param
    gguf, template, _ = REAL[family]
    if not (VOCAB / gguf).is_file():
        pytest.skip(f"{VOCAB / gguf} missing: run `make vocab` (the README's test command does)")
    tok = PreTrainedTokenizerFast.from_pretrained(str(VOCAB), gguf_file=gguf)
    if template is not None:
        tok.chat_template = template
    assert tok.chat_template, "Qwen2's GGUF ships its ChatML template"
    out = tmp_path_factory.mktemp(family)
    tiny_model(family, tok, out, hidden=64, layers=2, seed=0, init_std=0.2)
    return family, out


def test_korean_round_trips_and_the_turn_tokens_are_single_ids(real_base):
    from kotune.models.loading import load_tokenizer

    family, base = real_base
    tok = load_tokenizer(str(base))
    text = "대한민국의 수도는 서울입니다."
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    eot = REAL[family][2]
    assert tok(eot, add_special_tokens=False)["input_ids"] == [tok.convert_tokens_to_ids(eot)]
    assert tok.pad_token_id != tok.eos_token_id  # pad ≠ EOS, or EOS would be masked


def test_inference_prompt_is_the_masked_prefix_and_only_assistant_turns_train(real_base):
    from helpers import encode_conversation
    from kotune.data.prompt_formats import end_of_turn_ids, prompt_ids
    from kotune.models.loading import load_tokenizer

    family, base = real_base
    tok = load_tokenizer(str(base))
    eot = tok.convert_tokens_to_ids(REAL[family][2])
    assert end_of_turn_ids(tok) == [eot]
    ids, labels = encode_conversation(tok, TURNS[:3])
    prefix = prompt_ids(tok, TURNS[:2])
    assert ids[:len(prefix)] == prefix and all(x == -100 for x in labels[:len(prefix)])
    assert labels[len(prefix)] != -100  # the answer starts right where inference starts generating

    ids, labels = encode_conversation(tok, TURNS)
    spans, run = [], []
    for i, label in zip(ids, labels):
        if label != -100:
            run.append(i)
        elif run:
            spans, run = spans + [run], []
    spans += [run] if run else []
    assert len(spans) == 2  # two assistant turns; the system prompt and user turns never carry labels
    for span, answer in zip(spans, ["서울입니다.", "도쿄입니다."]):
        assert tok.decode(span, skip_special_tokens=True).strip() == answer and eot in span
        assert tok.eos_token_id not in span or tok.eos_token_id == eot  # the turn's own end, no EOS after it


@pytest.mark.slow  # ~20 s each: 128K/152K-row embeddings; the built-tokenizer families test this in the default suite
def test_a_tiny_model_on_the_real_vocabulary_stops_at_end_of_turn(real_base, tmp_path):
    from helpers import greedy_new_ids, train_qa
    from kotune.inference.loading import load_for_inference

    family, base = real_base
    model, tok = load_for_inference(train_qa(base, tmp_path, max_steps=30))
    eot = tok.convert_tokens_to_ids(REAL[family][2])
    new = greedy_new_ids(model, tok, ROWS[0]["instruction"])
    assert new[-1] == eot and len(new) < 30, tok.decode(new)
    assert tok.decode(new, skip_special_tokens=True).strip() == ROWS[0]["output"]
