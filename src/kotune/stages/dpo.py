"""Direct preference optimization (the body of `train/dpo.py` and `kotune dpo`); IPO is `loss_type: [ipo]`.

    python train/dpo.py configs/dpo/polyglot-ko-tiny-demo.yaml [--key=value ...]
    accelerate launch train/dpo.py CONFIG.yaml [--key=value ...]
"""

from __future__ import annotations

from kotune.stages.preference_run import Recipe, drop_reference_adapter, pairs, policy_and_reference, run_stage


def dpo_trainer_class():
    """TRL's DPOTrainer plus the NaN guard, taking kotune's pre-tokenized pairs as they are."""
    from trl import DPOTrainer

    from kotune.stages.safety import NonFiniteLossGuard

    class KotuneDPOTrainer(NonFiniteLossGuard, DPOTrainer):
        def _prepare_dataset(self, dataset, *rest, **kwargs):
            # kotune tokenized prompt and answers apart, as SFT did; TRL would re-tokenize them joined.
            if {"prompt_ids", "chosen_ids", "rejected_ids"} <= set(dataset.column_names):
                return dataset
            return super()._prepare_dataset(dataset, *rest, **kwargs)

    return KotuneDPOTrainer


RECIPE = Recipe(data=pairs, models=policy_and_reference, trainer=dpo_trainer_class,
                before_save=drop_reference_adapter,
                watch_chosen=True)


def main(argv: list[str]) -> int:
    return run_stage(argv, "dpo", RECIPE)
