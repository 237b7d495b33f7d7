"""Prompt formats: exact bytes, exact label masks, and the train/inference round trip, on real tokenizers."""

from __future__ import annotations

import pytest

from kotune.models.loading import load_tokenizer
from kotune.data.prompt_formats import install_template, prompt_ids, render_prompt, TEMPLATES
from helpers import encode_conversation

Q, A = "다음 문장을 존댓말로 바꿔 줘. 밥 먹었어?", "진지 드셨어요?"
USER = [{"role": "user", "content": Q}]
CONV = USER + [{"role": "assistant", "content": A}]

EXPECTED_PROMPT = {
    "komt": f"### instruction: {Q}\n\n### Response: ",
    "koquality": f"### 질문: {Q}### 답변: ",
    "llama2": f"<s>[INST] {Q} [/INST]",
    "mistral": f"<s>[INST] {Q} [/INST]",
}


@pytest.fixture(params=["sentencepiece", "bpe"])
def tokenizer(request, tiny_bases):
    """The real Llama/Mistral SentencePiece model and the Polyglot-like BPE, loaded the way training loads them."""
    arch = "llama" if request.param == "sentencepiece" else "gpt_neox"
    return load_tokenizer(str(tiny_bases[arch]))


@pytest.mark.parametrize("fmt", sorted(TEMPLATES))
def test_generation_prompt_bytes(fmt, tokenizer):
    install_template(tokenizer, fmt)
    expected = EXPECTED_PROMPT[fmt].replace("<s>", tokenizer.bos_token or "")
    assert render_prompt(tokenizer, USER) == expected


@pytest.mark.parametrize("fmt", sorted(TEMPLATES))
def test_labels_mask_prompt_and_train_answer_and_eos(fmt, tokenizer):
    install_template(tokenizer, fmt)
    ids, labels = encode_conversation(tokenizer, CONV)
    p = prompt_ids(tokenizer, USER)
    n = len(p)
    # The masked prefix is exactly what inference sends (round trip).
    assert ids[:n] == p
    assert labels[:n] == [-100] * n
    # Everything after it is trained, ends with EOS, and decodes to the answer.
    assert labels[n:] == ids[n:] and all(t != -100 for t in labels[n:])
    assert ids[-1] == tokenizer.eos_token_id and labels[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ids[n:], skip_special_tokens=True).strip() == A
    assert tokenizer.pad_token_id not in ids


def test_sentencepiece_bos_and_pad(sp_tokenizer, tiny_bases):
    tok = load_tokenizer(str(tiny_bases["mistral"]))
    assert (tok.bos_token_id, tok.eos_token_id) == (1, 2)
    assert tok.pad_token_id is not None and tok.pad_token_id != tok.eos_token_id  # pad ≠ EOS, or EOS is masked
    for fmt in ("llama2", "mistral"):
        install_template(tok, fmt)
        ids, _ = encode_conversation(tok, CONV)
        assert ids[0] == 1 and ids.count(1) == 1  # exactly one BOS, from the template


def test_bpe_has_distinct_pad(tiny_bases):
    tok = load_tokenizer(str(tiny_bases["gpt_neox"]))
    assert tok.pad_token_id != tok.eos_token_id


def test_llama2_system_block_and_multiturn(tiny_bases):
    tok = load_tokenizer(str(tiny_bases["llama"]))
    install_template(tok, "llama2")
    conv = [{"role": "system", "content": "친절하게 답하세요."}] + CONV + [
        {"role": "user", "content": "고마워."}, {"role": "assistant", "content": "천만에요."}]
    text = tok.apply_chat_template(conv, tokenize=False)
    assert text == (f"<s>[INST] <<SYS>>\n친절하게 답하세요.\n<</SYS>>\n\n{Q} [/INST] {A} </s>"
                    "<s>[INST] 고마워. [/INST] 천만에요. </s>")
    ids, labels = encode_conversation(tok, conv)
    trained = tok.decode([t for t in labels if t != -100], skip_special_tokens=True)
    assert A in trained and "천만에요" in trained and "고마워" not in trained and "친절" not in trained
    assert sum(1 for t in labels if t == tok.eos_token_id) == 2  # each assistant turn learns to stop


def test_template_saved_with_tokenizer(tmp_path, tiny_bases):
    from transformers import AutoTokenizer

    tok = load_tokenizer(str(tiny_bases["gpt_neox"]))
    install_template(tok, "koquality")
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert render_prompt(again, USER) == EXPECTED_PROMPT["koquality"]


@pytest.mark.parametrize("fmt", sorted(TEMPLATES))
def test_fast_rendering_is_the_chat_template(fmt, tokenizer):
    """Preprocessing fills a cached skeleton for kotune's formats: the same text as apply_chat_template for every
    prefix of a system + two-turn conversation, with contents that look like template syntax or hold the marker."""
    from kotune.data.encode import _render_fast

    install_template(tokenizer, fmt)
    conv = [{"role": "system", "content": "당신은 {{ 친절한 }} 비서입니다.\n"},
            {"role": "user", "content": " 첫 질문 {% if %} "}, {"role": "assistant", "content": "첫 답\n\n"},
            {"role": "user", "content": "둘째 \x000\x00 질문"}, {"role": "assistant", "content": "둘째 답"}]
    for n in range(1, len(conv) + 1):
        for generation in (True, False):
            expected = tokenizer.apply_chat_template(conv[:n], tokenize=False, add_generation_prompt=generation)
            assert _render_fast(tokenizer, conv[:n], generation) == expected, (fmt, n, generation)
