"""Reasoning bases: `thinking: on | off | auto` mapped to each real chat template's own switch, and training
prefix = inference prompt, byte for byte and id for id, in both modes, multi-turn included.

Templates:
- llama.cpp's own copies, shipped in llama-cpp-python 0.3.36's sdist under vendor/llama.cpp/models/templates/
  (`make vocab` extracts them to $KOTUNE_GGUF_VOCAB/templates): Qwen-Qwen3-0.6B, Qwen3.5-4B,
  upstage-Solar-Open-100B, deepseek-ai-DeepSeek-V3.1, deepseek-ai-DeepSeek-V3.2, google-gemma-4-31B-it.
- tests/fixtures/templates/exaone-4.0.jinja: EXAONE 4.0's model-card chat_template, as copied verbatim in
  ShishirPatil/gorilla berkeley-function-call-leaderboard/bfcl_eval/model_handler/local_inference/exaone4.py
  (commit da7f73a8, the Exaone4Handler docstring).

The tokenizer is the tiny Korean BPE plus each template's special tokens, so every turn token is one id.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from kotune.errors import KotuneError

VOCAB = Path(os.environ.get("KOTUNE_GGUF_VOCAB", Path.home() / ".cache" / "kotune" / "gguf_vocab"))
FIXTURES = Path(__file__).parent / "fixtures" / "templates"
# name -> (template file, does it render the trained turn's reasoning, end-of-turn token)
TEMPLATES = {
    "qwen3": (VOCAB / "templates" / "Qwen-Qwen3-0.6B.jinja", True, "<|im_end|>"),
    "qwen3.5": (VOCAB / "templates" / "Qwen3.5-4B.jinja", True, "<|im_end|>"),
    "solar-open": (VOCAB / "templates" / "upstage-Solar-Open-100B.jinja", True, "<|end|>"),
    "deepseek-v3.1": (VOCAB / "templates" / "deepseek-ai-DeepSeek-V3.1.jinja", False, "<｜end▁of▁sentence｜>"),
    "deepseek-v3.2": (VOCAB / "templates" / "deepseek-ai-DeepSeek-V3.2.jinja", True, "<｜end▁of▁sentence｜>"),
    "gemma-4": (VOCAB / "templates" / "google-gemma-4-31B-it.jinja", False, "<turn|>"),
    "exaone-4.0": (FIXTURES / "exaone-4.0.jinja", True, "[|endofturn|]"),
}
SPECIALS = ["<|im_start|>", "<|im_end|>", "<think>", "</think>", "<|begin|>", "<|end|>", "<|content|>", "<|think|>",
            "<｜User｜>", "<｜Assistant｜>", "<｜end▁of▁sentence｜>", "<|turn>", "<turn|>", "<|channel>", "<channel|>",
            "[|system|]", "[|user|]", "[|assistant|]", "[|endofturn|]"]
CONVERSATION = [
    {"role": "system", "content": "당신은 친절한 한국어 비서입니다."},
    {"role": "user", "content": "대한민국의 수도는 어디인가요?"},
    {"role": "assistant", "content": "서울입니다.", "reasoning_content": "수도를 묻는다. 대한민국의 수도는 서울이다."},
    {"role": "user", "content": "그럼 일본의 수도는요?"},
    {"role": "assistant", "content": "도쿄입니다.", "reasoning_content": "일본의 수도는 도쿄다."},
]


@pytest.fixture(scope="module")
def korean_tok(tmp_path_factory):
    from kotune.testing.tiny import korean_bpe_tokenizer

    tok = korean_bpe_tokenizer(tmp_path_factory.mktemp("bpe"))
    tok.add_special_tokens({"additional_special_tokens": SPECIALS})
    return tok


def with_template(tok, name: str):
    path, _, _ = TEMPLATES[name]
    if not path.is_file():
        pytest.skip(f"{path} missing: run `make vocab` (the README's test command does)")
    tok.chat_template = path.read_text(encoding="utf-8")
    tok.name_or_path = name
    return tok


def trained_turns(labels):
    """The runs of trained ids (one per trained turn)."""
    runs, run = [], []
    for label in labels + [-100]:
        if label != -100:
            run.append(label)
        elif run:
            runs.append(run)
            run = []
    return runs


@pytest.mark.parametrize("mode", ["on", "off"])
@pytest.mark.parametrize("name", list(TEMPLATES))
def test_every_trained_turn_starts_from_exactly_the_inference_prompt(korean_tok, name, mode):
    from kotune.data.encode import encode_examples
    from kotune.data.thinking import REASONING, template_kwargs

    tok = with_template(korean_tok, name)
    _, renders_reasoning, end_of_turn = TEMPLATES[name]
    kwargs = template_kwargs(tok.chat_template, mode, name)
    assert kwargs  # every one of these templates has a switch
    (examples, note), = encode_examples(tok, [CONVERSATION], thinking=mode)
    assert note == ("off" if mode == "off" else None if renders_reasoning else "unrendered")
    turns = [i for i, m in enumerate(CONVERSATION) if m["role"] == "assistant"]
    seen = []
    for ids, labels in examples:
        for run in trained_turns(labels):
            start = next(k for k in range(len(ids)) if ids[k:k + len(run)] == run and labels[k] != -100)
            prefix = ids[:start]
            text = tok.decode(prefix)
            # which turn this is: the inference prompt it starts from
            i = next(i for i in turns if text == tok.apply_chat_template(
                [{k: v for k, v in m.items() if k != REASONING} for m in CONVERSATION[:i]], tokenize=False,
                add_generation_prompt=True, **kwargs))
            prompt = tok.apply_chat_template(CONVERSATION[:i], tokenize=False, add_generation_prompt=True, **kwargs)
            assert text == prompt  # the string ...
            assert prefix == tok(prompt, add_special_tokens=False)["input_ids"]  # ... and the ids inference sends
            trained = tok.decode(run)
            answer = CONVERSATION[i]["content"]
            assert answer in trained and end_of_turn in trained[trained.index(answer):]
            thought = CONVERSATION[i]["reasoning_content"]
            assert (thought in trained) == (mode == "on" and renders_reasoning)
            seen.append(i)
    assert sorted(seen) == turns  # both assistant turns are learned


def test_earlier_turns_are_rendered_as_the_template_renders_them(korean_tok):
    """Qwen3 drops an earlier turn's reasoning: the second turn's example carries the first turn without it,
    exactly as inference will send the history; the conversation becomes one example per turn."""
    from kotune.data.encode import encode_examples

    tok = with_template(korean_tok, "qwen3")
    (examples, _), = encode_examples(tok, [CONVERSATION], thinking="on")
    assert len(examples) == 2
    second = tok.decode(examples[1][0])
    assert "서울입니다." in second and "대한민국의 수도는 서울이다" not in second.split("그럼")[0]
    assert "<think>\n일본의 수도는 도쿄다.\n</think>" in second


def test_auto_trains_rows_with_reasoning_in_thinking_mode_and_the_rest_without(korean_tok):
    from kotune.data.encode import encode_examples

    tok = with_template(korean_tok, "qwen3.5")
    plain = [{"role": "user", "content": "안녕하세요?"}, {"role": "assistant", "content": "안녕하세요! 무엇을 도와드릴까요?"}]
    ((thought, _), _), ((direct, _), _) = [(e[0], n) for e, n in encode_examples(tok, [CONVERSATION[:3], plain])]
    assert tok.decode(thought).endswith("<think>\n수도를 묻는다. 대한민국의 수도는 서울이다.\n</think>\n\n서울입니다.<|im_end|>\n")
    assert tok.decode(direct).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n안녕하세요! 무엇을 도와드릴까요?<|im_end|>\n")


def test_a_template_without_a_switch_refuses_on_and_off_and_auto_passes_nothing(korean_tok):
    from kotune.data.prompt_formats import TEMPLATES as KOTUNE_FORMATS
    from kotune.data.thinking import template_kwargs

    assert template_kwargs(KOTUNE_FORMATS["komt"], "auto", "polyglot-ko") == {}
    with pytest.raises(KotuneError, match="'polyglot-ko' has no thinking switch.*set thinking: auto"):
        template_kwargs(KOTUNE_FORMATS["komt"], "on", "polyglot-ko")


def test_the_switch_table_reads_each_templates_own_spelling():
    from kotune.data.thinking import switch_of

    assert switch_of("{% if force_reasoning %}<think>{% endif %}").on == {"force_reasoning": True}
    assert switch_of("{% if skip_reasoning %}<think></think>{% endif %}").off == {"skip_reasoning": True}
    assert switch_of("{% if thinking %}<think>{% endif %}").off == {"thinking": False}
    assert switch_of("{{ reasoning_effort }}").off == {"reasoning_effort": "minimal"}
    assert switch_of("{{ messages[0].content }}") is None


def test_chat_rows_keep_reasoning_content_and_think_blocks(korean_tok):
    from kotune.data.formats import chat_to_messages

    row = {"messages": [{"role": "user", "content": "2 더하기 3은?"},
                        {"role": "assistant", "content": "<think>\n2와 3을 더하면 5.\n</think>\n\n5입니다."}]}
    messages, reason = chat_to_messages(row)
    assert reason is None and messages[1] == {"role": "assistant", "content": "5입니다.",
                                              "reasoning_content": "2와 3을 더하면 5."}
    row["messages"][1] = {"role": "assistant", "content": "5입니다.", "reasoning_content": "2와 3을 더한다."}
    assert chat_to_messages(row)[0][1]["reasoning_content"] == "2와 3을 더한다."
    row["messages"][1] = {"role": "assistant", "content": "<think>생각</think>", "reasoning_content": "또 생각"}
    assert chat_to_messages(row) == (None, "message 2: reasoning given twice (reasoning_content and <think> in the "
                                           "content)")


def test_a_bad_thinking_value_is_one_clear_error_and_bare_on_off_read_as_yaml_booleans():
    from kotune.config.validation import check_config

    raw = {"model_name_or_path": "m", "output_dir": "o",
           "dataset_mixture": {"datasets": [{"id": "a.jsonl", "format": "chat"}]}}
    kotune, *_, problems = check_config({**raw, "thinking": True}, check_paths=False)  # YAML's `thinking: on`
    assert kotune["thinking"] == "on" and not problems
    kotune, *_, problems = check_config({**raw, "thinking": False}, check_paths=False)
    assert kotune["thinking"] == "off" and not problems
    *_, problems = check_config({**raw, "thinking": "maybe"}, check_paths=False)
    assert problems == ["thinking: expected one of 'auto', 'on', 'off', got 'maybe' (str)"]


def test_the_data_report_counts_split_conversations_and_dropped_reasoning(korean_tok, tmp_path, caplog):
    from kotune.config.schema import DatasetMixture, DatasetSource
    from kotune.data.report import format_report
    from kotune.data.sft_dataset import build_sft_data

    rows = tmp_path / "reasoning.jsonl"
    rows.write_text("\n".join(json.dumps({"messages": CONVERSATION}, ensure_ascii=False) for _ in range(3)),
                    encoding="utf-8")
    mixture = DatasetMixture(seed=1, datasets=[DatasetSource(id=str(rows), format="chat")])
    tok = with_template(korean_tok, "qwen3")
    (train,), _, report = build_sft_data(mixture, tok, 512, thinking="on")
    entry = report[str(rows)]
    assert len(train) == 6 and entry["used"] == 3 and entry["split_rows"] == 3 and entry["split_examples"] == 3
    with caplog.at_level(logging.WARNING, logger="kotune.data.sft_dataset"):
        (train,), _, report = build_sft_data(mixture, tok, 512, thinking="off")
    assert report[str(rows)]["reasoning_dropped"] == {"thinking: off": 3}
    assert "thinking: off: the reasoning of 3 rows was dropped" in caplog.text
    assert all("대한민국의 수도는 서울이다" not in tok.decode(ids) for ids in train["input_ids"])
    lines = format_report({"per_source": report, "examples": 6, "epoch_variants": 1,
                           "tokens": {"total": 1, "answer": 1, "length": {"p50": 1, "p90": 1, "p99": 1, "max": 1}},
                           "tokens_per_hangul_syllable": 1.0, "truncated_percent": 0.0,
                           "useful_token_fraction": {"padded": 1.0}})
    assert "reasoning dropped: thinking: off 3 rows" in lines and "split per turn: 3 conversations -> 6" in lines
    caplog.clear()
    tok = with_template(korean_tok, "deepseek-v3.1")
    with caplog.at_level(logging.WARNING, logger="kotune.data.sft_dataset"):
        _, _, report = build_sft_data(mixture, tok, 512)
    assert report[str(rows)]["reasoning_dropped"] == {"the template never renders it": 3}
    assert "never renders an assistant's reasoning" in caplog.text and "of 3 rows was dropped" in caplog.text
    with pytest.raises(KotuneError, match="has no thinking switch"):
        korean_tok.chat_template = "{% for m in messages %}{{ m.content }}{% endfor %}"
        build_sft_data(mixture, korean_tok, 512, thinking="on")


def test_the_shown_answer_is_the_final_answer_not_the_thinking(korean_tok):
    from kotune.data.thinking import final_answer, prompt_opens, visible_answer

    tok = with_template(korean_tok, "qwen3.5")
    on = tok.apply_chat_template(CONVERSATION[:2], tokenize=False, add_generation_prompt=True, enable_thinking=True)
    off = tok.apply_chat_template(CONVERSATION[:2], tokenize=False, add_generation_prompt=True, enable_thinking=False)
    assert prompt_opens(on) and not prompt_opens(off)
    ids = tok("수도는 서울이다.\n</think>\n\n서울입니다.<|im_end|>", add_special_tokens=False)["input_ids"]
    assert visible_answer(tok, ids, opened=True) == "서울입니다."
    assert visible_answer(tok, tok("생각이 끝나지 않았다", add_special_tokens=False)["input_ids"], opened=True) == ""
    plain = tok("서울입니다.<|im_end|>", add_special_tokens=False)["input_ids"]
    assert visible_answer(tok, plain) == tok.decode(plain, skip_special_tokens=True).strip() == "서울입니다."
    assert final_answer("<think>\n생각\n</think>\n\n도쿄입니다.") == "도쿄입니다."


@pytest.fixture(scope="module")
def thinking_base(tmp_path_factory):
    """A tiny Qwen2 with the Korean BPE, Qwen3.5's real template and its turn tokens."""
    from kotune.testing.tiny import korean_bpe_tokenizer, tiny_model

    path, _, _ = TEMPLATES["qwen3.5"]
    if not path.is_file():
        pytest.skip(f"{path} missing: run `make vocab`")
    out = tmp_path_factory.mktemp("qwen35-tiny")
    tok = korean_bpe_tokenizer(out)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>", "<think>", "</think>"]})
    tok.chat_template = path.read_text(encoding="utf-8")
    tiny_model("qwen2", tok, out, hidden=64, layers=2, seed=0)
    return out


def test_chat_answers_in_both_modes_and_shows_no_thinking(thinking_base, capsys):
    from kotune.cli import main as kotune
    from kotune.inference.generate import WordStreamer, answer, thinking_prompt
    from kotune.inference.loading import load_for_inference

    model, tok = load_for_inference(thinking_base)
    question = [{"role": "user", "content": "대한민국의 수도는 어디인가요?"}]
    for mode, tail in (("on", "<|im_start|>assistant\n<think>\n"),
                       ("off", "<|im_start|>assistant\n<think>\n\n</think>\n\n")):
        ids, opened = thinking_prompt(tok, question, mode)
        assert tok.decode(ids).endswith(tail) and opened == (mode == "on")
        streamer = WordStreamer(tok)
        text = answer(model, tok, question[0]["content"], max_new_tokens=6, streamer=streamer, thinking=mode)
        assert text == streamer.text and "<think>" not in text and "</think>" not in text
        assert kotune(["chat", str(thinking_base), "--prompt", question[0]["content"], "--thinking", mode,
                       "--max_new_tokens", "6"]) == 0
        assert "think>" not in capsys.readouterr().out


def test_chat_thinking_on_a_base_without_a_switch_is_one_line(tiny_bases, capsys):
    from kotune.cli import main as kotune

    with pytest.raises(SystemExit) as exit_:
        kotune(["chat", str(tiny_bases["gpt_neox"]), "--prompt", "안녕하세요?", "--thinking", "on"])
    assert exit_.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("kotune: error")]
    assert len(err) == 1 and "has no thinking switch" in err[0] and "set thinking: auto" in err[0]


def test_eval_sends_the_thinking_switch_with_each_chat_question(thinking_base, tmp_path):
    """`kotune eval --apply_chat_template --thinking off` on a Qwen3.5-templated model: lm-eval gets the switch as
    chat_template_args; without the chat template the flag is one clear error."""
    from kotune.eval.run import evaluate_run

    fixture = Path(__file__).parent / "fixtures" / "eval"
    scores = evaluate_run(thinking_base, tasks="kobest_sentineg", limit=2, out_dir=tmp_path, data_dir=fixture,
                          apply_chat_template=True, thinking="off")
    assert "kobest_sentineg" in json.dumps(scores)
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["model_args"]["chat_template_args"] == {"enable_thinking": False}
    with pytest.raises(KotuneError, match="add --apply_chat_template"):
        evaluate_run(thinking_base, tasks="kobest_sentineg", limit=2, out_dir=tmp_path, data_dir=fixture,
                     thinking="on")


@pytest.mark.parametrize("mode", ["on", "off"])
def test_dpo_prompts_are_the_inference_prompt_of_the_chosen_mode(korean_tok, tmp_path, mode):
    from kotune.config.schema import DatasetMixture, DatasetSource
    from kotune.data.preference import build_preference_data

    rows = tmp_path / "pairs.jsonl"
    pair = {"prompt": "대한민국의 수도는 어디인가요?", "chosen": "서울입니다.", "rejected": "부산입니다."}
    rows.write_text(json.dumps(pair, ensure_ascii=False) + "\n", encoding="utf-8")
    tok = with_template(korean_tok, "qwen3.5")
    train, _, _ = build_preference_data(DatasetMixture(seed=1, datasets=[DatasetSource(id=str(rows),
                                                                                        format="preference")]),
                                        tok, 256, None, thinking=mode)
    prompt = tok.apply_chat_template([{"role": "user", "content": pair["prompt"]}], tokenize=False,
                                     add_generation_prompt=True, enable_thinking=mode == "on")
    assert train[0]["prompt_ids"] == tok(prompt, add_special_tokens=False)["input_ids"]
    assert tok.decode(train[0]["chosen_ids"]).endswith("서울입니다.<|im_end|>\n")
