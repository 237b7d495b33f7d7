"""The data formats kotune reads: one converter per format name, turning a raw record into what training needs.

The config reads `FORMAT_NAMES` from here (plus `kit19/<task>`, see `kotune.data.kit19`). Adding a format is one
converter in `CONVERTERS` plus tests. A converter returns (record, None) or (None, the reason the row is dropped).
"""

from __future__ import annotations

import unicodedata

from kotune.data.prompt_formats import join_instruction
from kotune.data.thinking import REASONING, split_think
from kotune.errors import KotuneError

ROLES = ("system", "user", "assistant")
ROLE_NAMES = {r: r for r in ROLES}
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "chatgpt": "assistant", "bing": "assistant", "bard": "assistant"}


def rename_columns(source, rows: list[dict], columns: list[str]) -> tuple[list[dict], list[str]]:
    """A source's `columns:` map (kotune name -> your column) applied to the rows read. Names compare in NFC (a
    header typed on macOS is NFD). A column the file does not have, two names for one column, and a rename onto a
    column the file already has (which of the two would win is not the user's choice) are each one clear error."""
    if isinstance(source.columns, list):
        return kept_columns(source, rows, columns)
    rename: dict[str, str] = {}
    for ours, theirs in source.columns.items():
        ours, theirs = unicodedata.normalize("NFC", ours), unicodedata.normalize("NFC", theirs)
        if theirs in rename:
            raise KotuneError(f"dataset '{source.id}': columns maps both '{rename[theirs]}' and '{ours}' to the "
                              f"column '{theirs}': map each kotune name to its own column")
        rename[theirs] = ours
    missing = [theirs for theirs in rename if theirs not in columns]
    if missing:
        raise KotuneError(f"dataset '{source.id}': columns {missing} (from 'columns') not found; the file has "
                          f"{columns}")
    for theirs, ours in rename.items():
        if ours in columns and ours not in rename and ours != theirs:
            raise KotuneError(f"dataset '{source.id}': columns: {{{ours}: {theirs}}} renames '{theirs}' to '{ours}', "
                              f"but the file already has an '{ours}' column: remove one of the two from the file, or "
                              f"rename the file's own too (columns: {{{ours}: {theirs}, {ours}_original: {ours}}})")
    if not rename:
        return rows, columns
    return [{rename.get(k, k): v for k, v in row.items()} for row in rows], [rename.get(c, c) for c in columns]


def kept_columns(source, rows: list[dict], columns: list[str]) -> tuple[list[dict], list[str]]:
    """A `columns:` list (alignment-handbook, TRL): only these columns are read; one that is missing is an error."""
    keep = [unicodedata.normalize("NFC", c) for c in source.columns]
    missing = [c for c in keep if c not in columns]
    if missing:
        raise KotuneError(f"dataset '{source.id}': columns {missing} (from 'columns') not found; the data has "
                          f"{columns}")
    return [{k: row.get(k) for k in keep} for row in rows], keep


def infer_format(columns: list[str], allowed: tuple[str, ...] = ()) -> str | None:
    """The format whose columns the data has, most specific first, among the `allowed` ones (all when empty).

    >>> infer_format(["prompt", "chosen", "rejected", "score"])
    'preference'
    >>> infer_format(["prompt", "solution"], ("prompt",))
    'prompt'
    """
    for fmt in ("preference", "unpaired", "chat", "sharegpt", "instruction", "prompt", "text"):
        if (not allowed or fmt in allowed) and all(c in columns for c in NEEDS[fmt]):
            return fmt
    return None


# The columns each format needs, and what a file in that format looks like (for "use format: X" hints).
NEEDS = {"instruction": ("instruction", "output"), "chat": ("messages",), "sharegpt": ("conversations",),
         "preference": ("prompt", "chosen", "rejected"), "unpaired": ("prompt", "completion", "label"),
         "prompt": ("prompt",), "text": ("text",)}
SFT_FORMATS = {"instruction", "chat", "sharegpt"}
LOOKS_LIKE = {"chat": "OpenAI-style messages", "sharegpt": "ShareGPT conversations",
              "instruction": "instruction rows", "preference": "preference pairs",
              "unpaired": "unpaired (KTO) rows", "text": "raw text (a text column)"}


def wrong_format(fmt: str, columns: list[str]) -> str | None:
    """Why no row of a file with these columns can be read as `fmt`, with the format or rename that fits; None when
    the columns are there."""
    if not columns:
        return None
    missing = [c for c in NEEDS.get(fmt, ()) if c not in columns]
    if not missing:
        return None
    for other, looks in LOOKS_LIKE.items():
        if other != fmt and all(c in columns for c in NEEDS[other]):
            use = (f"use format: {other}" if {fmt, other} <= SFT_FORMATS  # else another stage reads it
                   else f"that is format: {other} data")
            return f"format: {fmt} needs {', '.join(missing)}, and this file has {looks}: {use}"
    return (f"format: {fmt} needs columns {list(NEEDS[fmt])}; the file has {columns}: map yours with columns: "
            f"{{{missing[0]}: your_column}}")


def _text(row: dict, key: str, required: bool) -> tuple[str | None, str | None]:
    """(value, reason-if-bad) for a text field."""
    value = row.get(key)
    if value is None:
        return None, (f"missing {key}" if required else None)
    if not isinstance(value, str):
        return None, f"{key} is not text"
    if "\ufffd" in value:
        return None, f"{key} has undecodable bytes"
    if required and not value.strip():
        return None, f"empty {key}"
    return value, None


def instruction_to_messages(row: dict) -> tuple[list[dict] | None, str | None]:
    """`{instruction, input?, output}` → a user turn and an assistant turn."""
    instruction, bad = _text(row, "instruction", True)
    if bad:
        return None, bad
    input_text, bad = _text(row, "input", False)
    if bad:
        return None, bad
    output, bad = _text(row, "output", True)
    if bad:
        return None, bad
    return [
        {"role": "user", "content": join_instruction(instruction, input_text)},
        {"role": "assistant", "content": output.strip()},
    ], None


def chat_to_messages(row: dict) -> tuple[list[dict] | None, str | None]:
    """`{messages: [{role, content}, ...]}` (OpenAI's fine-tuning rows too: content as a list of text parts, and
    `weight: 0` on an assistant turn that is context, not trained), with at least one assistant turn to learn from.
    """
    return _conversation(row.get("messages"), "role", "content", ROLE_NAMES, ", ".join(ROLES))


def sharegpt_to_messages(row: dict) -> tuple[list[dict] | None, str | None]:
    """ShareGPT rows: `{conversations: [{from: system|human|gpt, value}, ...]}`."""
    return _conversation(row.get("conversations"), "from", "value", SHAREGPT_ROLES,
                         "human, gpt, system (or user, assistant)")


def _conversation(turns, role_key: str, text_key: str, roles: dict, valid: str) -> tuple[list[dict] | None, str | None]:
    if not isinstance(turns, list) or not turns:
        return None, "missing messages"
    out = []
    for number, m in enumerate(turns, start=1):
        if not isinstance(m, dict):
            return None, f"message {number} is not a {{{role_key}, {text_key}}} mapping"
        role = roles.get(m.get(role_key)) if isinstance(m.get(role_key), str) else None
        if role is None:
            return None, f"{role_key} {m.get(role_key)!r} is not valid (valid: {valid})"
        content = m.get(text_key)
        if isinstance(content, list):  # OpenAI content parts: [{type: text, text: ...}]
            parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
            content = "".join(p for p in parts if isinstance(p, str)) if len(parts) == len(content) else None
            if content is None:
                return None, "message content has non-text parts"
        content, bad = _text({"content": content}, "content", True)
        if bad:
            return None, f"message {bad}"
        message = {"role": role, "content": content}
        if role == "assistant":
            reasoning, bad = _reasoning(m, content)
            if bad:
                return None, f"message {number}: {bad}"
            if reasoning is not None:
                message["content"], message[REASONING] = reasoning
        if role == "assistant" and m.get("weight") in (0, False):
            message["train"] = False  # shown as context, not learned (OpenAI's weight: 0)
        out.append(message)
    if not any(m["role"] == "assistant" for m in out):
        return None, "no assistant turn"
    return out, None


def _reasoning(message: dict, content: str) -> tuple[tuple[str, str] | None, str | None]:
    """((answer, reasoning) or None, reason-if-bad) of an assistant message: its `reasoning_content` (or
    `reasoning`, as vLLM and Solar-Open name it), or a `<think>...</think>` block opening its content. The answer
    must not be empty: the turn still has to end with one."""
    given = message.get(REASONING, message.get("reasoning"))
    if given is not None and not isinstance(given, str):
        return None, "reasoning_content is not text"
    thought, answer = split_think(content)
    if given is not None and thought is not None:
        return None, "reasoning given twice (reasoning_content and <think> in the content)"
    reasoning = given if given is not None else thought
    if reasoning is None or not reasoning.strip():
        return ((answer, "") if thought is not None else None), (None if answer.strip() else "empty content")
    if not answer.strip():
        return None, "content has reasoning but no answer after it"
    return (answer.strip() if thought is not None else answer, reasoning.strip("\n")), None


def _turns(value, name: str) -> tuple[list[dict] | None, str | None]:
    """A prompt or answer given as text or as a message list."""
    if isinstance(value, str):
        if not value.strip():
            return None, f"empty {name}"
        if "\ufffd" in value:
            return None, f"{name} has undecodable bytes"
        role = "user" if name == "prompt" else "assistant"
        return [{"role": role, "content": value.strip()}], None
    if isinstance(value, list) and value:
        messages, reason = chat_to_messages({"messages": value + ([{"role": "assistant", "content": "x"}]
                                                                  if name == "prompt" else [])})
        if reason and reason != "no assistant turn":
            return None, f"{name}: {reason}"
        return (messages[:-1] if name == "prompt" else messages), None
    return None, (f"missing {name}" if value is None else f"{name} is not text or messages")


def preference_to_record(row: dict) -> tuple[dict | None, str | None]:
    """`{prompt, chosen, rejected}` as strings or message lists → {prompt: messages, chosen: text, rejected: text}.

    A chosen/rejected message list may repeat the prompt (as in ultrafeedback_binarized); its last assistant turn
    is the answer.
    """
    prompt, bad = _turns(row.get("prompt"), "prompt")
    if bad:
        return None, bad
    if prompt[-1]["role"] != "user":
        return None, "prompt does not end with a user turn"
    answers = {}
    for name in ("chosen", "rejected"):
        turns, bad = _turns(row.get(name), name)
        if bad:
            return None, bad
        if turns[-1]["role"] != "assistant":
            return None, f"{name} does not end with an assistant turn"
        answers[name] = turns[-1]["content"]
    if answers["chosen"] == answers["rejected"]:
        return None, "chosen equals rejected"
    return {"prompt": prompt, **answers}, None


def _label(label) -> bool | None:
    """A KTO label: a bool, 1/0, or "true"/"false"; None for anything else."""
    if isinstance(label, bool):
        return label
    if isinstance(label, str) and label.strip().lower() in ("true", "false"):
        return label.strip().lower() == "true"
    if isinstance(label, (int, float)) and label in (0, 1):
        return bool(label)
    return None


def unpaired_to_record(row: dict) -> tuple[dict | None, str | None]:
    """`{prompt, completion, label}` (KTO's unpaired rows, as in trl-lib/kto-mix-14k): prompt and completion as text
    or message lists, label true (desirable) or false. Labels 1/0 and "true"/"false" are read as such; anything else
    drops the row, never a guess."""
    prompt, bad = _turns(row.get("prompt"), "prompt")
    if bad:
        return None, bad
    if prompt[-1]["role"] != "user":
        return None, "prompt does not end with a user turn"
    turns, bad = _turns(row.get("completion"), "completion")
    if bad:
        return None, bad
    value = _label(row.get("label"))
    if value is None:
        return None, "label is not true/false" if row.get("label") is not None else "missing label"
    return {"prompt": prompt, "completion": turns[-1]["content"], "label": value}, None


def prompt_to_record(row: dict) -> tuple[dict | None, str | None]:
    """`{prompt, answer?, speech_level?}` (GRPO's prompts): the prompt as text or messages; `answer`, the known final
    answer a reward can check; `speech_level`, the register asked for (합쇼체 or 해요체). Other columns are kept for
    reward functions that read them."""
    prompt, bad = _turns(row.get("prompt"), "prompt")
    if bad:
        return None, bad
    if prompt[-1]["role"] != "user":
        return None, "prompt does not end with a user turn"
    extra = {k: v for k, v in row.items() if k != "prompt"}
    if "answer" in extra and not isinstance(extra["answer"], (str, int, float)):
        return None, "answer is not text or a number"
    if "answer" in extra:
        extra["answer"] = str(extra["answer"]).strip()
    if extra.get("speech_level") not in (None, "합쇼체", "해요체"):
        return None, "speech_level is not 합쇼체 or 해요체"
    return {"prompt": prompt, **extra}, None


def text_to_record(row: dict) -> tuple[str | None, str | None]:
    """`{text}` (raw text for continued pretraining): the document, without the whitespace around it.

    >>> text_to_record({"text": " 서울은 한국의 수도이다.\\n"}), text_to_record({"text": "  "})
    (('서울은 한국의 수도이다.', None), (None, 'empty text'))
    """
    text, bad = _text(row, "text", True)
    return (None, bad) if bad else (text.strip(), None)


# name -> converter; a stage says which names it reads (kotune.stages.registry).
CONVERTERS = {"instruction": instruction_to_messages, "chat": chat_to_messages, "sharegpt": sharegpt_to_messages,
              "preference": preference_to_record, "unpaired": unpaired_to_record, "prompt": prompt_to_record,
              "text": text_to_record}

FORMAT_NAMES = tuple(CONVERTERS)
