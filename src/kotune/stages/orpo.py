"""ORPO: SFT and preference in one stage, with no reference model (the body of `train/orpo.py` and `kotune orpo`).

    accelerate launch train/orpo.py configs/orpo/polyglot-ko-tiny-demo.yaml [--key=value ...]

It reads the same {prompt, chosen, rejected} data as DPO. The loss is the chosen answer's NLL plus `beta` times the
odds-ratio term, so it can start from a base as well as from an SFT output dir.
"""

from __future__ import annotations

from kotune.stages.preference_run import Recipe, legacy_pairwise, pairs, policy_only, run_stage


def orpo_trainer_class():
    from trl.experimental.orpo import ORPOTrainer

    return legacy_pairwise(ORPOTrainer)


RECIPE = Recipe(data=pairs, models=policy_only, trainer=orpo_trainer_class, watch_chosen=True)


def main(argv: list[str]) -> int:
    return run_stage(argv, "orpo", RECIPE)
