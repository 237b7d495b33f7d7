"""Verifiable rewards for GRPO, named in a config's `reward_funcs` (or given as "module:function").

Each takes TRL's reward-function arguments (`completions` plus the dataset's columns as lists) and returns one
float per completion, or None where it does not apply (TRL then leaves it out of the sum):
- `exact_answer`: 1.0 when the completion gives the row's `answer`: for a number, the last number in the completion
  (math with a final number); for text, the completion itself, up to spaces and closing punctuation (the KIT-19
  classification slots: a label such as 긍정/부정).
- `hangul_share`: the share of Hangul among the completion's letters, so the answer stays in Korean (the `<think>`
  tags that think_format_reward asks for are markup, not letters of the answer).
- `speech_level`: the share of sentences that end in the register the row asks for (`speech_level`: 합쇼체 or
  해요체; 합쇼체 when the column is absent).

- `think_answer_format` / `think_answer_tags`: the <think>/<answer> layout, whole (1.0) or a quarter per tag found
  once; open-r1's recipes call them `format` and `tag_count`.

TRL's own rewards (`trl.rewards`), as open-r1 and TRL recipes name them, sit beside these and are imported only when a
run resolves them (reading a config must not import TRL):
- `accuracy_reward`: 1.0 when the completion's LaTeX answer (\\boxed{} first) equals the row's `solution` under
  math_verify; None where the solution does not parse. math_verify's anchors without a box are English ("the final
  answer is"), so a Korean answer scores when boxed: "답은 $\\boxed{42}$입니다".
- `reasoning_accuracy_reward`: the same on the text after `</think>`; 0.0 when the reasoning never closes.
- `think_format_reward`: 1.0 when the completion opens with one `<think>...</think>` block.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import re
from typing import Callable

NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
SENTENCE_END = re.compile(r"[.!?。\n]+")
THINK_TAG = re.compile(r"</?think>")
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
        letters = [c for c in THINK_TAG.sub("", text_of(completion)) if c.isalpha()]
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


# name -> the reward, or "module:function" where it is imported when a run resolves it (TRL's: heavy to import)
THINK_ANSWER = re.compile(r"<think>\n.*?\n</think>\n<answer>\n.*?\n</answer>", re.DOTALL)
TAGS = ("<think>\n", "\n</think>\n", "\n<answer>\n", "\n</answer>")


def think_answer_format(completions, **_) -> list[float]:
    """1.0 when the whole completion is a <think> block and then an <answer> block, each tag on its own line (the
    layout open-r1's GRPO system prompt asks for; its `format`)."""
    return [1.0 if THINK_ANSWER.fullmatch(text_of(c).strip()) else 0.0 for c in completions]


def think_answer_tags(completions, **_) -> list[float]:
    """A quarter point for each of the four tags of that layout that appears exactly once (open-r1's `tag_count`):
    a gradient toward the format before a completion gets all of it right."""
    return [float(sum(0.25 for tag in TAGS if text_of(c).count(tag) == 1)) for c in completions]


REWARDS: dict[str, Callable | str] = {
    "think_answer_format": think_answer_format, "think_answer_tags": think_answer_tags,
    "exact_answer": exact_answer, "hangul_share": hangul_share, "speech_level": speech_level,
    "accuracy_reward": "trl.rewards:accuracy_reward",
    "reasoning_accuracy_reward": "trl.rewards:reasoning_accuracy_reward",
    "think_format_reward": "trl.rewards:think_format_reward",
}
# The columns a shipped reward cannot score without; checked against the prompt files when the config is read
# (kotune.stages.reward_columns), since TRL only calls a reward at the first step.
NEEDS_COLUMNS: dict[str, tuple[str, ...]] = {"exact_answer": ("answer",), "accuracy_reward": ("solution",),
                                             "reasoning_accuracy_reward": ("solution",)}
# The packages a shipped reward imports when it scores: (import name, what to pip install).
NEEDS_PACKAGES: dict[str, tuple[str, str]] = {"accuracy_reward": ("math_verify", "math-verify"),
                                              "reasoning_accuracy_reward": ("math_verify", "math-verify")}


def reward_config_problems(names) -> list[str]:
    """What is wrong with a config's `reward_funcs`: none given, a name kotune and TRL do not ship, or a reward whose
    package is missing. Imports nothing heavy."""
    if not names:
        return [f"reward_funcs: required, e.g. [exact_answer] (shipped: {', '.join(REWARDS)}; or module:function for "
                "your own)"]
    problems = []
    for name in names if isinstance(names, list) else []:
        if isinstance(name, str) and name not in REWARDS and ":" not in name:
            near = difflib.get_close_matches(name, list(REWARDS), n=1, cutoff=0.6)
            hint = f": did you mean {near[0]!r}?" if near else ""
            problems.append(f"reward_funcs: '{name}' is not a shipped reward{hint} ({', '.join(REWARDS)}); write "
                            "module:function for your own")
    return problems + reward_problems(names)


def reward_problems(names) -> list[str]:
    """One problem per shipped reward in `names` whose package is not installed (TRL would raise only at the first
    step, after the model has loaded). Looks the package up without importing it."""
    problems = []
    for name in names if isinstance(names, list) else []:
        need = NEEDS_PACKAGES.get(name) if isinstance(name, str) else None
        if need and importlib.util.find_spec(need[0]) is None:
            problems.append(f"reward_funcs: {name} checks answers with the {need[0]} package, which is not "
                            f"installed: pip install {need[1]} (or pip install -e .[math]), or drop {name}")
    return problems


def _imported(spec: str) -> Callable | None:
    module, _, attr = spec.partition(":")
    func = getattr(importlib.import_module(module), attr, None) if module and attr else None
    return func if callable(func) else None


def resolve_reward(name: str) -> Callable:
    """A shipped reward by name (kotune's, or TRL's imported now), or "module:function" for your own."""
    shipped = REWARDS.get(name)
    if callable(shipped):
        return shipped
    func = _imported(shipped or name) if shipped or ":" in name else None
    if func is None:
        raise ValueError(f"'{name}' is neither a shipped reward ({', '.join(REWARDS)}) nor module:function")
    return func
