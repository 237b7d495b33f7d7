"""Prompt formats, stored as tokenizer chat templates so training and inference use the same bytes.

| format    | generation prompt                          | then the answer     |
|-----------|--------------------------------------------|---------------------|
| komt      | `### instruction: {x}\\n\\n### Response: `   | `{answer}` + EOS    |
| koquality | `### 질문: {x}### 답변: `                   | `{answer}` + EOS    |
| llama2    | `<s>[INST] {x} [/INST]` (+ <<SYS>> block)  | ` {answer} </s>`    |
| mistral   | `<s>[INST] {x} [/INST]`                    | `{answer}</s>`      |

Training tokenizes the rendered prompt and the answer apart and concatenates the ids, so the masked prefix of
every training example is exactly what `apply_chat_template(..., add_generation_prompt=True)` gives at inference.
"""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)

# Literal text is emitted through {{ '...' }} so Jinja's whitespace control never eats a separator.
# A system message, if any, comes first as plain text for the '###' formats.
_KOMT = (
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'system' -%}{{ m['content'] + '\\n\\n' }}"
    "{%- elif m['role'] == 'user' -%}{{ '### instruction: ' + m['content'] + '\\n\\n' }}"
    "{%- elif m['role'] == 'assistant' -%}{{ '### Response: ' + m['content'] + eos_token }}"
    "{%- if not loop.last -%}{{ '\\n\\n' }}{%- endif -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '### Response: ' }}{%- endif -%}"
)

# KoQuality's released format, verbatim: no separator between the question and '### 답변:'.
_KOQUALITY = (
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'system' -%}{{ m['content'] + '\\n\\n' }}"
    "{%- elif m['role'] == 'user' -%}{{ '### 질문: ' + m['content'] }}"
    "{%- elif m['role'] == 'assistant' -%}{{ '### 답변: ' + m['content'] + eos_token }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '### 답변: ' }}{%- endif -%}"
)

_LLAMA2 = (
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set sys = '<<SYS>>\\n' + messages[0]['content'] + '\\n<</SYS>>\\n\\n' -%}{%- set msgs = messages[1:] -%}"
    "{%- else -%}{%- set sys = '' -%}{%- set msgs = messages -%}{%- endif -%}"
    "{%- for m in msgs -%}"
    "{%- if m['role'] == 'user' -%}"
    "{{ bos_token + '[INST] ' + (sys if loop.first else '') + m['content'] + ' [/INST]' }}"
    "{%- elif m['role'] == 'assistant' -%}{{ ' ' + m['content'] + ' ' + eos_token }}"
    "{%- endif -%}"
    "{%- endfor -%}"
)

_MISTRAL = (
    "{{ bos_token }}"
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'system' -%}{{ m['content'] + '\\n\\n' }}"
    "{%- elif m['role'] == 'user' -%}{{ '[INST] ' + m['content'] + ' [/INST]' }}"
    "{%- elif m['role'] == 'assistant' -%}{{ m['content'] + eos_token }}"
    "{%- endif -%}"
    "{%- endfor -%}"
)

TEMPLATES = {"komt": _KOMT, "koquality": _KOQUALITY, "llama2": _LLAMA2, "mistral": _MISTRAL}
DEFAULT_FORMAT = {"gpt_neox": "koquality", "llama": "llama2", "mistral": "mistral"}


def join_instruction(instruction: str, input_text: str | None) -> str:
    """The user turn: the instruction, and the input after one space when there is one."""
    instruction = instruction.strip()
    if input_text and input_text.strip():
        return f"{instruction} {input_text.strip()}"
    return instruction


def resolve_format(prompt_format: str, model_type: str, model_dir: str | None, tokenizer) -> str | None:
    """The format name to install, or None to keep the chat template the model dir already has.

    `auto` keeps a template saved with the model (e.g. an SFT output), else picks the base's default; other
    architectures keep their own template, and fall back to komt when they have none.
    """
    if prompt_format != "auto":
        return prompt_format
    if tokenizer.chat_template:
        if model_dir and Path(model_dir).is_dir():
            return None
        if model_type not in DEFAULT_FORMAT:
            return None
    return DEFAULT_FORMAT.get(model_type, "komt")


def install_template(tokenizer, fmt: str | None) -> None:
    """Store the format's template on the tokenizer; it is saved with every output dir."""
    if fmt is None:
        logger.info("prompt format: keeping the chat template saved with the model")
        return
    tokenizer.chat_template = TEMPLATES[fmt]
    logger.info("prompt format: %s", fmt)


def render_prompt(tokenizer, messages: list[dict]) -> str:
    """The text the model sees before it answers (the generation prompt)."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    """Token ids of the generation prompt, exactly as training masked them. BOS, if any, is in the template."""
    return tokenizer(render_prompt(tokenizer, messages), add_special_tokens=False)["input_ids"]


def _render_fast(tokenizer, messages: list[dict], add_generation_prompt: bool) -> str:
    """apply_chat_template(tokenize=False) without its per-call overhead (3x faster on 100K rows); the round-trip
    tests hold it to the public API's output."""
    try:
        from transformers.utils.chat_template_utils import _compile_jinja_template
    except ImportError:  # a transformers without the helper: the public API, slower
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    template = _compile_jinja_template(tokenizer.chat_template)
    return template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                           **tokenizer.special_tokens_map)


def _token_ids(tokenizer, texts: list[str]) -> list[list[int]]:
    """Ids of each text, no special tokens added; straight from the Rust tokenizer when there is one."""
    backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
    if backend is not None:
        return [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def _segments(tokenizer, messages: list[dict]) -> list[tuple[str, bool]]:
    """The conversation as (text, trained) pieces: the prompt up to each assistant turn, then that turn."""
    pieces: list[tuple[str, bool]] = []
    rendered = ""
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _render_fast(tokenizer, messages[:i], add_generation_prompt=True)
        upto = _render_fast(tokenizer, messages[: i + 1], add_generation_prompt=False)
        if not before.startswith(rendered) or not upto.startswith(before):
            raise ValueError("chat template is not prefix-stable; kotune cannot mask it turn by turn")
        if len(before) > len(rendered):
            pieces.append((before[len(rendered):], False))
        pieces.append((upto[len(before):], True))
        rendered = upto
    return pieces


def encode_conversations(tokenizer, conversations: list[list[dict]]) -> list[tuple[list[int], list[int]]]:
    """(input_ids, labels) per conversation; only assistant turns (and their EOS) carry labels.

    The prompt part up to each assistant turn and that turn's text are tokenized apart and concatenated, so every
    prompt prefix equals what inference sends. All pieces go to the tokenizer in one batch (fast tokenizers then
    use every core).
    """
    segmented = [_segments(tokenizer, m) for m in conversations]
    texts = [text for pieces in segmented for text, _ in pieces]
    ids_flat = _token_ids(tokenizer, texts) if texts else []
    out, k = [], 0
    eos = tokenizer.eos_token_id
    for pieces in segmented:
        input_ids: list[int] = []
        labels: list[int] = []
        for _, trained in pieces:
            ids = ids_flat[k]
            k += 1
            if trained:
                if eos is not None and eos not in ids:
                    ids = ids + [eos]  # a template that forgot EOS: the model must still stop
                labels += ids
            else:
                labels += [-100] * len(ids)
            input_ids += ids
        out.append((input_ids, labels))
    return out


def encode_conversation(tokenizer, messages: list[dict]) -> tuple[list[int], list[int]]:
    """(input_ids, labels) for one conversation (see encode_conversations)."""
    return encode_conversations(tokenizer, [messages])[0]
