"""The `thinking: on | off | auto` option, mapped to each chat template's own switch, and reasoning in chat rows.

Reasoning bases spell the same switch differently, so kotune keeps one option and one table (`SWITCHES`) that maps
it onto whichever variable the template reads, found in the template's source (jinja2's undeclared variables).
A template reads a row's reasoning from its own field too (Qwen3's `reasoning_content`, Solar-Open's `reasoning`,
or `<think>` inside the content); `placement` finds out which by rendering a probe, and says when a template never
renders an assistant's reasoning at all (DeepSeek-V3.1, Gemma 4 outside tool calls).

>>> split_think("<think>\\n서울은 수도다.\\n</think>\\n\\n서울입니다.")
('서울은 수도다.', '서울입니다.')
>>> final_answer("생각 중...</think>\\n\\n서울입니다.", opened=True)
'서울입니다.'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from kotune.errors import KotuneError

MODES = ("auto", "on", "off")
REASONING = "reasoning_content"  # where kotune keeps a message's reasoning once a row is loaded
THINK = re.compile(r"^\s*<think>(.*?)</think>\s*", re.S)
# Where a reasoning block ends in the text a model generates (Qwen/DeepSeek/EXAONE/HyperCLOVA `</think>`, Gemma 4's
# thought channel), and how one opens.
CLOSERS = ("</think>", "<channel|>")
OPENERS = ("<think>", "<|channel>thought")


@dataclass(frozen=True)
class Switch:
    """One template variable that turns thinking on or off, and the values kotune passes for each mode."""

    variable: str
    on: dict
    off: dict
    families: str

    def describe(self, mode: str) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in (self.on if mode == "on" else self.off).items())


# First match wins: DeepSeek-V3.1/3.2 read `thinking` and fall back to `enable_thinking`, so `enable_thinking`
# (the spelling most templates share) is tried first.
SWITCHES = (
    Switch("enable_thinking", {"enable_thinking": True}, {"enable_thinking": False},
           "Qwen3, Qwen3.5, EXAONE 4.x, Gemma 4, DeepSeek-V3.1/3.2, Kanana-2, A.X K1"),
    Switch("thinking", {"thinking": True}, {"thinking": False}, "DeepSeek-V3.x templates that read only `thinking`"),
    Switch("force_reasoning", {"force_reasoning": True}, {"skip_reasoning": True}, "HyperCLOVA X SEED Think"),
    Switch("skip_reasoning", {"force_reasoning": True}, {"skip_reasoning": True}, "HyperCLOVA X SEED Think"),
    Switch("reasoning_effort", {"reasoning_effort": "high"}, {"reasoning_effort": "minimal"},
           "Solar-Open-100B (low/minimal render an empty think block)"),
)
SWITCH_NAMES = ", ".join(dict.fromkeys(s.variable for s in SWITCHES))
# Training-only flags a template must get to render the trained turn's reasoning at all: EXAONE 4.0's `skip_think`
# defaults to true and renders an empty think block instead. They change no generation prompt (they act on the
# last assistant message, and a prompt ends with a user turn).
SHOW_REASONING = {"skip_think": False}


def check_mode(mode) -> str:
    """The mode, or one error naming the key and its values (YAML reads a bare on/off as true/false)."""
    mode = {True: "on", False: "off"}.get(mode, mode) if isinstance(mode, bool) else mode
    if mode not in MODES:
        raise KotuneError(f"thinking: {mode!r} is not one of auto, on, off (auto: the template's default at "
                          "inference, and in training each row's own: thinking where it has reasoning)")
    return mode


@lru_cache(maxsize=64)
def _variables(template: str) -> frozenset:
    import jinja2
    import jinja2.meta

    env = jinja2.Environment(extensions=["jinja2.ext.loopcontrols"])
    try:
        return frozenset(jinja2.meta.find_undeclared_variables(env.parse(template)))
    except jinja2.TemplateSyntaxError:  # a template jinja2 cannot parse: rendering reports it
        return frozenset()


def switch_of(template: str | None) -> Switch | None:
    """The thinking switch a chat template reads, or None."""
    if not isinstance(template, str):
        return None
    names = _variables(template)
    return next((s for s in SWITCHES if s.variable in names), None)


def template_kwargs(template: str | None, mode: str, base: str = "the model") -> dict:
    """What `apply_chat_template` gets for `mode` at inference: the switch's on/off values, nothing under auto.
    on/off on a template without a switch is the user's error: the setting would silently do nothing."""
    mode = check_mode(mode)
    if mode == "auto":
        return {}
    switch = switch_of(template)
    if switch is None:
        raise KotuneError(f"thinking: {mode}: the chat template of '{base}' has no thinking switch (it reads none of "
                          f"{SWITCH_NAMES}), so there is nothing to turn {mode}: set thinking: auto")
    return dict(switch.on if mode == "on" else switch.off)


def split_think(content: str) -> tuple[str | None, str]:
    """(reasoning, answer) of a content that opens with `<think>...</think>`; (None, content) otherwise."""
    match = THINK.match(content)
    if not match:
        return None, content
    return match.group(1).strip("\n"), content[match.end():]


def reasoning_of(message: dict) -> str | None:
    """A loaded message's reasoning, or None."""
    value = message.get(REASONING)
    return value if isinstance(value, str) and value.strip() else None


@lru_cache(maxsize=64)
def placement(template: str, specials: tuple = ()) -> str | None:
    """The message field this template renders a final assistant turn's reasoning from (`reasoning_content`,
    `reasoning`, or `content` with `<think>` inside), or None when it never renders it. Found by rendering a probe
    in thinking mode, since templates read reasoning in ways a source scan cannot tell apart (Gemma 4 reads it only
    beside tool calls, DeepSeek-V3.1 strips `<think>` from the content)."""
    from transformers.utils.chat_template_utils import _compile_jinja_template

    switch = switch_of(template)
    kwargs = {**(switch.on if switch else {}), **_shown(template)}
    mark = "추론표지"
    compiled = _compile_jinja_template(template)
    fields = (REASONING, "reasoning") + (("content",) if "</think>" in template else ())  # a template that parses
    for field in fields:  # <think> out of the content; one that does not would only show the tags as text
        answer = {"role": "assistant", "content": "답변"}
        if field == "content":
            answer["content"] = f"<think>\n{mark}\n</think>\n\n답변"
        else:
            answer[field] = mark
        try:
            text = compiled.render(messages=[{"role": "user", "content": "질문"}, answer], add_generation_prompt=False,
                                   **dict(specials), **kwargs)
        except Exception:  # noqa: BLE001 - a template that refuses the probe renders no reasoning we can place
            continue
        if mark in text:
            return field
    return None


def _shown(template: str) -> dict:
    return {k: v for k, v in SHOW_REASONING.items() if k in _variables(template)}


def place(message: dict, field: str | None) -> dict:
    """The message as the template reads it: its reasoning moved to `field` (None: dropped)."""
    reasoning = reasoning_of(message)
    out = {k: v for k, v in message.items() if k != REASONING}
    if reasoning is None or field is None:
        return out
    if field == "content":
        out["content"] = f"<think>\n{reasoning}\n</think>\n\n{message['content']}"
    else:
        out[field] = reasoning
    return out


@dataclass(frozen=True)
class Prepared:
    """A conversation ready to render: messages as the template reads them, the switch kwargs for this row, and
    what was dropped (None, "off": thinking: off, "unrendered": the template never renders reasoning)."""

    messages: list
    kwargs: dict
    dropped: str | None


def for_training(messages: list[dict], mode: str, template: str | None, specials: tuple = (),
                 base: str = "the model") -> Prepared:
    """One conversation in the given mode. auto: a row with reasoning trains in thinking mode, one without in
    non-thinking mode (a template without a switch gets no kwargs); on/off: every row in that mode. Reasoning is
    dropped under off, and when the template never renders it (reported by the caller, never silently)."""
    mode = check_mode(mode)
    has = any(m["role"] == "assistant" and reasoning_of(m) for m in messages)
    field = placement(template, specials) if has and isinstance(template, str) else None
    dropped = None
    if has and mode == "off":
        dropped = "off"
    elif has and field is None:
        dropped = "unrendered"
    switch = switch_of(template)
    if switch is None:
        kwargs = template_kwargs(template, mode, base)  # auto: {}; on/off: the one clear error
    else:
        thinking = mode == "on" or (mode == "auto" and has and dropped is None)
        kwargs = {**switch.on, **_shown(template)} if thinking else dict(switch.off)
    return Prepared([place(m, None if dropped else field) for m in messages], kwargs, dropped)


def final_answer(text: str, opened: bool = False) -> str:
    """The answer a model gave after its reasoning: the text after the last closing tag (`</think>`, Gemma 4's
    `<channel|>`). A reasoning block still open (the prompt opened it, or the text does) has no answer yet: ''."""
    ends = [(text.rfind(c), c) for c in CLOSERS if c in text]
    if ends:
        at, closer = max(ends)
        return text[at + len(closer):].strip()
    if opened or text.lstrip().startswith(OPENERS):
        return ""
    return text.strip()


def prompt_opens(prompt_text: str) -> bool:
    """Whether a generation prompt ends inside an open reasoning block (Qwen3.5/DeepSeek thinking mode: `<think>`)."""
    tail = prompt_text.rstrip()[-40:]  # the generation prompt's own end, not a system block's flag
    last_open = max(tail.rfind(o) for o in OPENERS)
    return last_open >= 0 and max(tail.rfind(c) for c in CLOSERS) < last_open


def visible_answer(tokenizer, ids: list[int], opened: bool = False) -> str:
    """The decoded answer a user sees and answer health scores: the reasoning block cut off (`final_answer`), special
    tokens dropped. Without any reasoning it is exactly `decode(ids, skip_special_tokens=True).strip()`."""
    raw = tokenizer.decode(ids, skip_special_tokens=False)
    if not opened and not any(c in raw for c in CLOSERS) and not raw.lstrip().startswith(OPENERS):
        return tokenizer.decode(ids, skip_special_tokens=True).strip()
    text = final_answer(raw, opened)
    for special in sorted(set(tokenizer.all_special_tokens), key=len, reverse=True):
        text = text.replace(special, "")
    return text.strip()
