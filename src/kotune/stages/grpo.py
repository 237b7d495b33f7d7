"""GRPO with verifiable rewards (the body of `train/grpo.py` and `kotune grpo`).

    accelerate launch train/grpo.py configs/grpo/polyglot-ko-tiny-demo.yaml [--key=value ...]

Prompts come from `format: prompt` sources ({prompt, answer?, speech_level?, ...}); every other column reaches the
reward functions. `reward_funcs` names them (kotune.stages.rewards, or "module:function"), `reward_weights` weighs
them. Completions are generated with transformers' generate (on CPU too); `use_vllm: true` is the fast route on a
GPU. With TRL's default `beta: 0` there is no reference model.
"""

from __future__ import annotations

from kotune.stages.preference_run import Recipe, policy_only, run_stage


def prompts(cfg, tokenizer):
    """The prompt rows as message lists (TRL applies the chat template kotune installed), with their columns."""
    from kotune.data.mixture import source_report
    from kotune.data.preference import assemble

    def columns(drawn, report) -> dict[str, list]:
        out = []
        for rows, picks in drawn:
            out += [rows.records[p.index] for p in picks]
            report[rows.source.id] = source_report(rows, len(picks))
        keys = ["prompt", *sorted({k for r in out for k in r} - {"prompt"})]
        return {k: [r.get(k) for r in out] for k in keys}  # one schema: a column a row lacks is None there

    kot = cfg.kotune
    return assemble(kot.dataset_mixture, kot.strict, kot.eval_split_size, "GRPO prompt set", columns)


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
