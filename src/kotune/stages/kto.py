"""KTO on unpaired data: answers marked desirable or not, no pairs needed (the body of `train/kto.py`, `kotune kto`).

    accelerate launch train/kto.py configs/kto/polyglot-ko-tiny-demo.yaml [--key=value ...]

It reads `format: unpaired` ({prompt, completion, label}) and unpairs `format: preference` sources into one
desirable and one undesirable row each. `desirable_weight`/`undesirable_weight` balance the two kinds; the data
report counts them. The reference is the start model, as in DPO (the SFT adapter frozen as 'ref' under LoRA).
"""

from __future__ import annotations

from kotune.stages.preference_run import Recipe, drop_reference_adapter, policy_and_reference, run_stage


def unpaired(cfg, tokenizer):
    from kotune.data.unpaired import build_unpaired_data

    kot = cfg.kotune
    return build_unpaired_data(kot.dataset_mixture, tokenizer, cfg.training.max_length, kot.max_prompt_length,
                               kot.strict, kot.eval_split_size)


def kto_trainer_class():
    from trl import KTOTrainer

    from kotune.stages.safety import NonFiniteLossGuard

    class KotuneKTOTrainer(NonFiniteLossGuard, KTOTrainer):
        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            if not {"prompt_ids", "completion_ids", "label"} <= set(dataset.column_names):
                return super()._prepare_dataset(dataset, processing_class, args, dataset_name)
            if not self.calculate_KL:
                return dataset

            def mismatched(batch):  # KTO's KL term: each prompt with the batch's previous answer
                return {"KL_completion_ids": batch["completion_ids"][-1:] + batch["completion_ids"][:-1]}

            return dataset.map(mismatched, batched=True, batch_size=args.per_device_train_batch_size)

    return KotuneKTOTrainer


RECIPE = Recipe(data=unpaired, models=policy_and_reference, trainer=kto_trainer_class,
                before_save=drop_reference_adapter,
                watch_chosen=True)


def main(argv: list[str]) -> int:
    return run_stage(argv, "kto", RECIPE)
