"""Prompt formats, stored as tokenizer chat templates so training and inference use the same bytes.

| format    | generation prompt                          | then the answer     |
|-----------|--------------------------------------------|---------------------|
| komt      | `### instruction: {x}\\n\\n### Response: `   | `{answer}` + EOS    |
| koquality | `### 질문: {x}### 답변: `                   | `{answer}` + EOS    |
| llama2    | `<s>[INST] {x} [/INST]` (+ <<SYS>> block)  | ` {answer} </s>`    |
| mistral   | `<s>[INST] {x} [/INST]`                    | `{answer}</s>`      |

Training tokenizes the rendered prompt and the answer apart and concatenates the ids (`kotune.data.encode`), so the
masked prefix of every training example is exactly what `apply_chat_template(..., add_generation_prompt=True)`
gives at inference.
"""

from __future__ import annotations

import logging

from kotune.models.architectures import spec_for

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


def join_instruction(instruction: str, input_text: str | None) -> str:
    """The user turn: the instruction, and the input after one space when there is one."""
    instruction = instruction.strip()
    if input_text and input_text.strip():
        return f"{instruction} {input_text.strip()}"
    return instruction


def resolve_format(prompt_format: str, model_type: str, model_dir: str | None, tokenizer) -> str | None:
    """The format name to install, or None to keep the chat template the base ships.

    `auto`: the base's own template always wins, from the Hub or a local dir (Llama-3.x, Qwen, Gemma, EXAONE,
    SOLAR and an SFT output all ship theirs); a base without one gets its family's kotune format (the architecture
    registry: Polyglot-Ko koquality, Llama-2 llama2, Mistral mistral), else komt.
    """
    if prompt_format != "auto":
        return prompt_format
    if tokenizer.chat_template:
        return None
    return default_format(model_type)


def default_format(model_type: str) -> str:
    """The kotune format for a model that has no chat template at all."""
    return spec_for(model_type).prompt_format or "komt"


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


def end_of_turn_ids(tokenizer) -> list[int]:
    """The special tokens the chat template puts after an assistant turn (Llama-3 <|eot_id|>, Qwen <|im_end|>,
    Gemma <end_of_turn>, EOS for kotune's formats): where generation must stop, and what training teaches."""
    if not tokenizer.chat_template:
        return []
    turn = [{"role": "user", "content": "질문"}, {"role": "assistant", "content": "답변"}]
    try:
        text = tokenizer.apply_chat_template(turn, tokenize=False)
    except Exception:  # noqa: BLE001 - a template that needs other roles: no end-of-turn known
        return []
    tail = text[text.rfind("답변") + len("답변"):]
    special = set(tokenizer.all_special_ids) | {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    return [i for i in tokenizer(tail, add_special_tokens=False)["input_ids"] if i in special]


def prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    """Token ids of the generation prompt, exactly as training masked them. BOS, if any, is in the template."""
    return tokenizer(render_prompt(tokenizer, messages), add_special_tokens=False)["input_ids"]


def recipe_template(chat_template: str | None, chat_template_path: str | None) -> str | None:
    """The template a recipe brings: its `chat_template` string, or the text of `chat_template_path` (a .jinja file,
    or a local model/tokenizer dir's saved template), exactly as written."""
    from pathlib import Path

    from kotune.errors import ConfigError

    if chat_template is not None:
        return chat_template
    if chat_template_path is None:
        return None
    path = Path(chat_template_path).expanduser()
    if path.is_file():
        return path.read_text(encoding="utf-8")
    if path.is_dir():
        if (path / "chat_template.jinja").is_file():
            return (path / "chat_template.jinja").read_text(encoding="utf-8")
        import json

        config = path / "tokenizer_config.json"
        saved = json.loads(config.read_text(encoding="utf-8")).get("chat_template") if config.is_file() else None
        if isinstance(saved, str):
            return saved
    raise ConfigError([f"chat_template_path: '{chat_template_path}' is neither a template file nor a model dir with a "
                       "saved chat template (chat_template.jinja or tokenizer_config.json); download it first"],
                      "config")


def prepare_chat_tokenizer(tokenizer, cfg, model_type: str, model_dir: str | None) -> None:
    """The chat template and EOS a run encodes with, set before any data is encoded and saved with the model:
    the recipe's template if it brings one, else `prompt_format`; then the recipe's `eos_token`, checked against
    the vocabulary first."""
    from kotune.errors import ConfigError

    kot = cfg.kotune
    text = recipe_template(kot.chat_template, kot.chat_template_path)
    if text is not None:
        tokenizer.chat_template = text
        logger.info("prompt format: the recipe's chat template (%s), encoded, saved and served as written",
                    "chat_template" if kot.chat_template is not None else kot.chat_template_path)
    else:
        install_template(tokenizer, resolve_format(kot.prompt_format, model_type, model_dir, tokenizer))
    eos = getattr(cfg.training, "eos_token", None)
    if eos is not None and eos != tokenizer.eos_token:
        if eos not in tokenizer.get_vocab():
            raise ConfigError([f"eos_token: '{eos}' is not in the vocabulary of {model_dir}'s tokenizer (its EOS is "
                               f"'{tokenizer.eos_token}'): use a token the tokenizer has, or remove eos_token"], "config")
        logger.info("eos_token: %s replaces %s (the recipe's)", eos, tokenizer.eos_token)
        tokenizer.eos_token = eos
