"""CPO: contrastive preference optimization, a preference loss plus NLL on the chosen answer, with no reference model
(TRL's CPOTrainer with its own defaults, `loss_type: sigmoid` and `cpo_alpha: 1`; the body of `train/cpo.py` and
`kotune cpo`).

    accelerate launch train/cpo.py configs/cpo/polyglot-ko-tiny-demo.yaml [--key=value ...]

SimPO runs on the same trainer as its own stage (`kotune simpo`), so a CPO recipe never turns into SimPO through
kotune's SimPO defaults.
"""

from __future__ import annotations

from kotune.stages.preference_run import run_stage
from kotune.stages.simpo import RECIPE


def main(argv: list[str]) -> int:
    return run_stage(argv, "cpo", RECIPE)
