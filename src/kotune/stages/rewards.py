"""Verifiable rewards for GRPO, named in a config's `reward_funcs` (or given as "module:function").

Each takes TRL's reward-function arguments (`completions` plus the dataset's columns as lists) and returns one
float per completion, or None where it does not apply (TRL then leaves it out of the sum):
- `exact_answer`: 1.0 when the completion gives the row's `answer`: for a number, the last number in the completion
  (math with a final number); for text, the completion itself, up to spaces and closing punctuation (the KIT-19
  classification slots: a label such as 긍정/부정).
- `hangul_share`: the share of Hangul among the completion's letters, so the answer stays in Korean.
- `speech_level`: the share of sentences that end in the register the row asks for (`speech_level`: 합쇼체 or
  해요체; 합쇼체 when the column is absent).
"""

from __future__ import annotations

import importlib
import re
from typing import Callable

NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
SENTENCE_END = re.compile(r"[.!?。\n]+")
HAPSYO = ("니다", "니까", "십시오", "시오")
HAEYO = ("요",)


def text_of(completion) -> str:
    """A completion as text: TRL gives a message list for conversational prompts, a string otherwise."""
    if isinstance(completion, list):
        return "".join(m.get("content", "") for m in completion if isinstance(m, dict))
    return str(completion)


def _number(text: str) -> float | None:
    found = NUMBER.findall(text)
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:
        return None


def exact_answer(completions, answer=None, **_) -> list[float | None]:
    if answer is None:
        raise ValueError("reward exact_answer needs an 'answer' column in the GRPO data")
    scores = []
    for completion, expected in zip(completions, answer):
        if expected is None or str(expected).strip() == "":
            scores.append(None)
            continue
        text, expected = text_of(completion).strip(), str(expected).strip()
        target = _number(expected) if NUMBER.fullmatch(expected.replace(" ", "")) else None
        if target is not None:
            got = _number(text)
            scores.append(1.0 if got is not None and abs(got - target) < 1e-6 else 0.0)
        else:
            scores.append(1.0 if text.rstrip(" .!。") == expected.rstrip(" .!。") else 0.0)
    return scores


def hangul_share(completions, **_) -> list[float]:
    scores = []
    for completion in completions:
        letters = [c for c in text_of(completion) if c.isalpha()]
        scores.append(sum("\uac00" <= c <= "\ud7a3" or "\u3131" <= c <= "\u318e" for c in letters) / len(letters)
                      if letters else 0.0)
    return scores


def speech_level(completions, speech_level=None, **_) -> list[float]:
    levels = speech_level if speech_level is not None else [None] * len(completions)
    scores = []
    for completion, level in zip(completions, levels):
        endings = HAEYO if level == "해요체" else HAPSYO
        sentences = [s.strip() for s in SENTENCE_END.split(text_of(completion)) if s.strip()]
        scores.append(sum(s.endswith(endings) for s in sentences) / len(sentences) if sentences else 0.0)
    return scores


REWARDS: dict[str, Callable] = {"exact_answer": exact_answer, "hangul_share": hangul_share,
                                "speech_level": speech_level}
# The columns a shipped reward cannot score without; checked against the prompt files when the config is read
# (kotune.stages.reward_columns), since TRL only calls a reward at the first step.
NEEDS_COLUMNS: dict[str, tuple[str, ...]] = {"exact_answer": ("answer",)}


def resolve_reward(name: str) -> Callable:
    """A shipped reward by name, or "module:function" for your own."""
    if name in REWARDS:
        return REWARDS[name]
    module, _, attr = name.partition(":")
    func = getattr(importlib.import_module(module), attr, None) if attr else None
    if not callable(func):
        raise ValueError(f"'{name}' is neither a shipped reward ({', '.join(REWARDS)}) nor module:function")
    return func
