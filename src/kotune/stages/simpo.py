"""SimPO: reference-free preference training on length-normalized log-probabilities with a target margin
(TRL's CPOTrainer with `loss_type: simpo`; the body of `train/simpo.py` and `kotune simpo`).

    accelerate launch train/simpo.py configs/simpo/polyglot-ko-tiny-demo.yaml [--key=value ...]

kotune sets `loss_type: simpo` and `cpo_alpha: 0` (pure SimPO) when they are unset; `cpo_alpha > 0` adds CPO's NLL
term on the chosen answer. CPO itself (`loss_type: sigmoid`) is its own stage, `kotune cpo`, on the same trainer.
"""

from __future__ import annotations

from kotune.stages.preference_run import Recipe, legacy_pairwise, pairs, policy_only, run_stage


def simpo_trainer_class():
    from trl.experimental.cpo import CPOTrainer

    return legacy_pairwise(CPOTrainer)


RECIPE = Recipe(data=pairs, models=policy_only, trainer=simpo_trainer_class, watch_chosen=True)


def main(argv: list[str]) -> int:
    return run_stage(argv, "simpo", RECIPE)
