"""Direct preference optimization (the body of `train/dpo.py` and `kotune dpo`).

    python train/dpo.py configs/dpo/polyglot-ko-tiny-demo.yaml [--key=value ...]
    accelerate launch train/dpo.py CONFIG.yaml [--key=value ...]

Sections run in a fixed order: logging, config, tokenizer, data, model, trainer, train, save.
"""

from __future__ import annotations

import logging


logger = logging.getLogger("kotune.dpo")


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


def main(argv: list[str]) -> int:
    # --- logging --------------------------------------------------------------------------------------------
    from kotune.logs import setup_logging

    setup_logging()

    # --- config ---------------------------------------------------------------------------------------------
    from kotune.config.loading import load_config

    cfg = load_config(argv, stage="dpo")  # a user mistake is reported here, before torch and TRL load
    from kotune.stages.common import finish, preflight, train, write_run_files

    resume = preflight(cfg)  # also starts DeepSpeed's process group when the config names one
    args, model_args = cfg.training, cfg.model

    # --- tokenizer and prompt format (an SFT output dir brings its own chat template) -------------------------
    from kotune.models.adapter_dirs import adapter_base
    from kotune.models.loading import load_model_config, load_tokenizer
    from kotune.data.prompt_formats import install_template, resolve_format

    path = model_args.model_name_or_path
    base_config = load_model_config(adapter_base(path) or path, model_args.trust_remote_code,
                                    model_args.model_revision)
    tokenizer = load_tokenizer(path, model_args.trust_remote_code, model_args.model_revision)
    install_template(tokenizer, resolve_format(cfg.kotune.prompt_format, base_config.model_type, path, tokenizer))

    # --- data -----------------------------------------------------------------------------------------------
    from kotune.data.preference import build_preference_data

    kot = cfg.kotune
    with args.main_process_first(desc="preparing preference data"):
        train_dataset, eval_dataset, data_report = build_preference_data(
            kot.dataset_mixture, tokenizer, args.max_length, kot.max_prompt_length, kot.strict, kot.eval_split_size)
    logger.info("preference pairs: %d%s", len(train_dataset),
                f", eval pairs: {len(eval_dataset)}" if eval_dataset is not None else "")

    # --- model and reference --------------------------------------------------------------------------------
    from transformers import set_seed

    from kotune.stages.dpo_reference import load_policy_and_reference

    set_seed(args.seed)
    model, ref_model = load_policy_and_reference(model_args, args, tokenizer)

    # --- trainer --------------------------------------------------------------------------------------------
    from kotune.stages.common import bind_callbacks, eval_callbacks
    from kotune.stages.safety import SigtermCheckpoint

    sigterm = SigtermCheckpoint()
    callbacks = eval_callbacks(cfg, tokenizer, eval_dataset)
    trainer = dpo_trainer_class()(model=model, ref_model=ref_model, args=args, train_dataset=train_dataset,
                                  eval_dataset=eval_dataset, processing_class=tokenizer, callbacks=[sigterm, *callbacks])
    bind_callbacks(trainer, callbacks)
    write_run_files(cfg, trainer, data_report)

    # --- train ----------------------------------------------------------------------------------------------
    result = train(trainer, sigterm, resume)
    if result is None:
        return 143  # SIGTERM: checkpoint written

    # --- save -----------------------------------------------------------------------------------------------
    if getattr(trainer.model, "peft_config", None) and "ref" in trainer.model.peft_config:
        trainer.model.delete_adapter("ref")  # the frozen reference is the SFT adapter, already on disk
    finish(trainer, result)
    return 0
