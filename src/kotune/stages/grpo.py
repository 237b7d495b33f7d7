"""GRPO with verifiable rewards (the body of `train/grpo.py` and `kotune grpo`).

    accelerate launch train/grpo.py configs/grpo/polyglot-ko-tiny-demo.yaml [--key=value ...]

Prompts come from `format: prompt` sources ({prompt, answer?, speech_level?, ...}); every other column reaches the
reward functions. `reward_funcs` names them (kotune.stages.rewards, or "module:function"), `reward_weights` weighs
them. Completions are generated with transformers' generate (on CPU too); `use_vllm: true` is the fast route on a
GPU. With TRL's default `beta: 0` there is no reference model.

open-r1's GRPO keys that TRL 1.16 no longer has are kotune's: `system_prompt` goes before every prompt without a
system message, and `max_prompt_length` drops (and counts in the data report) the prompts that render longer.
"""

from __future__ import annotations

import logging

from kotune.stages.preference_run import Recipe, policy_only, run_stage

logger = logging.getLogger("kotune")
TOO_LONG = "prompt longer than max_prompt_length"  # the reason DPO, KTO and the others count such rows under


def with_system(prompt: list[dict], system_prompt: str | None) -> list[dict]:
    """The prompt with `system_prompt` as its first message, unless it has a system message of its own.

    >>> with_system([{"role": "user", "content": "3 더하기 4는?"}], "한국어로 답하세요.")
    [{'role': 'system', 'content': '한국어로 답하세요.'}, {'role': 'user', 'content': '3 더하기 4는?'}]
    """
    if not system_prompt or any(m["role"] == "system" for m in prompt):
        return prompt
    return [{"role": "system", "content": system_prompt}, *prompt]


def prompt_lengths(tokenizer, prompts: list[list[dict]], template_kwargs: dict | None = None) -> list[int]:
    """Each prompt's token count as GRPOTrainer renders it: the chat template with the generation prompt and the
    run's `chat_template_kwargs`, no special tokens added (kotune.data.prompt_formats.prompt_ids, with the kwargs)."""
    if not prompts:
        return []
    rendered = tokenizer.apply_chat_template(prompts, tokenize=False, add_generation_prompt=True,
                                             **(template_kwargs or {}))
    return [len(ids) for ids in tokenizer(rendered, add_special_tokens=False)["input_ids"]]


def prompt_columns(drawn, report: dict, tokenizer, system_prompt: str | None, max_prompt_length: int | None,
                   strict: bool, template_kwargs: dict | None = None) -> dict[str, list]:
    """The picked rows as columns (`prompt`: messages with the system prompt put in; every other column for the
    rewards). Rows the template cannot render, or whose prompt renders longer than `max_prompt_length` tokens, are
    dropped and counted per source (an error under strict)."""
    from kotune.data.mixture import drop, source_report
    from kotune.data.preference import placeable

    out, added, seen = [], 0, 0
    for rows, picks in drawn:
        messages = [with_system(rows.records[p.index]["prompt"], system_prompt) for p in picks]
        added += sum(m is not rows.records[p.index]["prompt"] for p, m in zip(picks, messages))
        seen += len(picks)
        picks, messages = placeable(rows, picks, messages, tokenizer, strict)
        lengths = (prompt_lengths(tokenizer, messages, template_kwargs) if max_prompt_length is not None
                   else [0] * len(messages))
        used = 0
        for pick, prompt, n in zip(picks, messages, lengths):
            if max_prompt_length is not None and n > max_prompt_length:
                drop(rows, pick.index, TOO_LONG, strict, "shorten the prompt or raise max_prompt_length")
                continue
            out.append({**rows.records[pick.index], "prompt": prompt})
            used += 1
        report[rows.source.id] = source_report(rows, used)
    if system_prompt:
        logger.info("system_prompt: put before %d of %d prompts (the others have their own system message)",
                    added, seen)
    keys = ["prompt", *sorted({k for r in out for k in r} - {"prompt"})]
    return {k: [r.get(k) for r in out] for k in keys}  # one schema: a column a row lacks is None there


def prompts(cfg, tokenizer):
    """The prompt rows as message lists (TRL applies the chat template kotune installed), with their columns."""
    from kotune.data.preference import assemble

    kot = cfg.kotune
    kwargs = getattr(cfg.training, "chat_template_kwargs", None)
    kwargs = kwargs if isinstance(kwargs, dict) else None
    return assemble(kot.dataset_mixture, kot.strict, kot.eval_split_size, "GRPO prompt set",
                    lambda drawn, report: prompt_columns(drawn, report, tokenizer, kot.system_prompt,
                                                         kot.max_prompt_length, kot.strict, kwargs))


def policy_and_rewards(cfg, tokenizer) -> dict:
    from kotune.stages.rewards import resolve_reward

    return {**policy_only(cfg, tokenizer), "reward_funcs": [resolve_reward(n) for n in cfg.kotune.reward_funcs]}


def grpo_trainer_class():
    from trl import GRPOTrainer

    from kotune.stages.safety import NonFiniteLossGuard

    class KotuneGRPOTrainer(NonFiniteLossGuard, GRPOTrainer):
        pass

    return KotuneGRPOTrainer


RECIPE = Recipe(data=prompts, models=policy_and_rewards, trainer=grpo_trainer_class)


def main(argv: list[str]) -> int:
    return run_stage(argv, "grpo", RECIPE)
