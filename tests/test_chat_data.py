"""Chat data: multi-turn `messages` with a system prompt, ShareGPT `conversations`, OpenAI fine-tuning rows (content
parts, `weight: 0`); labels on assistant turns only, every turn or the last one."""

from __future__ import annotations

import json

import pytest

from kotune.config import DatasetMixture, DatasetSource
from kotune.data.prompt_formats import install_template
from kotune.models.loading import load_tokenizer

TURNS = [{"role": "system", "content": "당신은 친절한 한국어 비서입니다."},
         {"role": "user", "content": "서울의 인구는 몇 명인가요?"},
         {"role": "assistant", "content": "약 940만 명입니다."},
         {"role": "user", "content": "부산은요?"},
         {"role": "assistant", "content": "약 330만 명입니다."}]
SHAREGPT = {"conversations": [{"from": {"system": "system", "user": "human", "assistant": "gpt"}[m["role"]],
                               "value": m["content"]} for m in TURNS]}


@pytest.fixture(params=["komt", "mistral"])
def tok(request, tiny_bases):
    t = load_tokenizer(str(tiny_bases["gpt_neox" if request.param == "komt" else "mistral"]))
    install_template(t, request.param)
    return t


def encode_rows(tmp_path, tok, rows, fmt, last_turn_only=False):
    path = tmp_path / f"{fmt}.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    from helpers import build_sft_variants

    (ds,), report = build_sft_variants(DatasetMixture(datasets=[DatasetSource(id=str(path), format=fmt)]), tok, 512,
                                       last_turn_only=last_turn_only)
    return ds, report


def trained_spans(ids, labels):
    """The runs of labelled tokens, as lists of ids."""
    spans, run = [], []
    for i, label in zip(ids, labels):
        if label != -100:
            run.append(i)
        elif run:
            spans.append(run)
            run = []
    return spans + ([run] if run else [])


def test_every_assistant_turn_is_trained_and_nothing_else(tmp_path, tok):
    ds, _ = encode_rows(tmp_path, tok, [{"messages": TURNS}], "chat")
    ids, labels = ds[0]["input_ids"], ds[0]["labels"]
    spans = trained_spans(ids, labels)
    assert len(spans) == 2  # two assistant turns; system and user turns are never labelled
    for span, answer in zip(spans, ["약 940만 명입니다.", "약 330만 명입니다."]):
        assert tok.decode(span, skip_special_tokens=True).strip() == answer and span[-1] == tok.eos_token_id
    # the first answer follows exactly the prompt ids inference sends; the text before the second is the rendered
    # history (pieces are tokenized apart, so ids may split differently at turn boundaries than one long string)
    first = tok(tok.apply_chat_template(TURNS[:2], tokenize=False, add_generation_prompt=True),
                add_special_tokens=False)["input_ids"]
    assert ids[:len(first)] == first and labels[len(first)] != -100 and labels[len(first) - 1] == -100
    second = max(i for i in range(len(ids)) if labels[i] == -100 and i < len(ids) - len(spans[1]))
    history = tok.apply_chat_template(TURNS[:4], tokenize=False, add_generation_prompt=True)
    same_text = lambda a, b: a.split() == b.split() or "".join(a.split()) == "".join(b.split())  # noqa: E731
    assert same_text(tok.decode(ids[:second + 1]), history)  # SentencePiece pieces each start a word


def test_sharegpt_rows_equal_the_same_messages(tmp_path, tok):
    chat, _ = encode_rows(tmp_path, tok, [{"messages": TURNS}], "chat")
    share, report = encode_rows(tmp_path, tok, [SHAREGPT, {"conversations": [{"from": "robot", "value": "?"}]}],
                                "sharegpt")
    assert share[0] == chat[0] and len(share) == 1
    assert report[str(tmp_path / "sharegpt.jsonl")]["dropped"] == {
        "from 'robot' is not valid (valid: human, gpt, system (or user, assistant))": 1}  # the value and the valid ones


def test_openai_rows_content_parts_and_weight_zero(tmp_path, tok):
    rows = [{"messages": [{"role": "system", "content": [{"type": "text", "text": TURNS[0]["content"]}]},
                          TURNS[1], {**TURNS[2], "weight": 0}, TURNS[3], {**TURNS[4], "weight": 1}]}]
    ds, _ = encode_rows(tmp_path, tok, rows, "chat")
    spans = trained_spans(ds[0]["input_ids"], ds[0]["labels"])
    assert [tok.decode(s, skip_special_tokens=True).strip() for s in spans] == ["약 330만 명입니다."]
    full, _ = encode_rows(tmp_path, tok, [{"messages": TURNS}], "chat")
    assert ds[0]["input_ids"] == full[0]["input_ids"]  # same text, only the labels differ


def test_last_turn_only(tmp_path, tok):
    ds, _ = encode_rows(tmp_path, tok, [{"messages": TURNS}], "chat", last_turn_only=True)
    spans = trained_spans(ds[0]["input_ids"], ds[0]["labels"])
    assert [tok.decode(s, skip_special_tokens=True).strip() for s in spans] == ["약 330만 명입니다."]


def test_train_on_turns_is_a_checked_config_key(tmp_path, tiny_bases):
    from conftest import base_config
    from kotune.config import build_config
    from kotune.errors import ConfigError

    raw = base_config(tiny_bases["gpt_neox"], tmp_path / "o", train_on_turns="last")
    assert build_config(raw).kotune.train_on_turns == "last"
    with pytest.raises(ConfigError, match="train_on_turns"):
        build_config({**raw, "train_on_turns": "first"})
