"""Supervised fine-tuning of a Korean instruction model (the body of `train/sft.py` and `kotune sft`).

    python train/sft.py configs/sft/polyglot-ko-tiny-demo.yaml [--key=value ...]
    accelerate launch train/sft.py CONFIG.yaml [--key=value ...]
    deepspeed train/sft.py CONFIG.yaml --deepspeed deepspeed/zero3_offload.json

Sections run in a fixed order: logging, config, tokenizer, data, model, trainer, train, save.
"""

from __future__ import annotations

import logging


logger = logging.getLogger("kotune.sft")


def main(argv: list[str]) -> int:
    # --- logging --------------------------------------------------------------------------------------------
    from kotune.logs import setup_logging

    setup_logging()

    # --- config ---------------------------------------------------------------------------------------------
    from kotune.config.loading import load_config

    cfg = load_config(argv, stage="sft")  # a user mistake is reported here, before torch and TRL load
    from kotune.stages.common import finish, preflight, train, write_run_files
    from kotune.vocab.freeze import EmbeddingLearningRate, apply_stage, check_stage

    check_stage(cfg)  # eeve_stage / embedding_learning_rate against the model dir's kotune_vocab.json

    resume = preflight(cfg)  # also starts DeepSpeed's process group when the config names one
    args, model_args = cfg.training, cfg.model

    # --- tokenizer and prompt format -----------------------------------------------------------------------
    from kotune.models.loading import load_model_config, load_tokenizer
    from kotune.data.prompt_formats import prepare_chat_tokenizer

    base_config = load_model_config(model_args.model_name_or_path, model_args.trust_remote_code,
                                    model_args.model_revision)
    tokenizer = load_tokenizer(model_args.model_name_or_path, model_args.trust_remote_code, model_args.model_revision)
    prepare_chat_tokenizer(tokenizer, cfg, base_config.model_type, model_args.model_name_or_path)

    # --- data -----------------------------------------------------------------------------------------------
    from kotune.data.epochs import EpochVariantCollator, SetEpoch, merge_variants
    from kotune.data.prepare import prepare_sft_data

    variants, eval_dataset, data_report, _ = prepare_sft_data(cfg, tokenizer)
    logger.info("training examples: %d%s", len(variants[0]),
                f", eval examples: {len(eval_dataset)}" if eval_dataset is not None else "")

    # --- model ----------------------------------------------------------------------------------------------
    from transformers import set_seed

    from kotune.config.deepspeed_file import deepspeed_stage
    from kotune.models.loading import load_model

    set_seed(args.seed)  # LoRA's initial weights come from the global RNG: same seed, same run
    model = load_model(model_args, args, tokenizer, deepspeed_stage=deepspeed_stage(args.deepspeed))
    model = apply_stage(model, cfg)  # eeve_stage: the rows and layers this stage trains, the rest frozen

    # --- trainer --------------------------------------------------------------------------------------------
    from trl import SFTTrainer

    from kotune.data.packing import (bfd_pack, collator, default_packing, disable_cache_for_packing,
                                     log_bfd_step_change, packing_mode)
    from kotune.stages.common import bind_callbacks, eval_callbacks
    from kotune.stages.safety import NonFiniteLossGuard, SigtermCheckpoint
    from kotune.stages.trackers import tracker_callbacks

    if "packing" not in cfg.resolved:
        args.packing = cfg.resolved["packing"] = default_packing(base_config, model_args.trust_remote_code)
    mode = packing_mode(cfg.resolved, args)
    data_collator = collator(tokenizer, mode)
    callbacks = eval_callbacks(cfg, tokenizer, eval_dataset) + tracker_callbacks(cfg)
    if mode == "bfd":
        if len(variants) > 1:
            logger.warning("packing_strategy=bfd packs one fixed set of bins: KIT-19 templates stay as drawn for "
                           "epoch 0 (use packing: true to draw new templates every epoch)")
        train_dataset = bfd_pack(variants[0], args.max_length)
        log_bfd_step_change(len(variants[0]), len(train_dataset), args)
    elif len(variants) > 1:
        train_dataset = merge_variants(variants)
        data_collator = EpochVariantCollator(data_collator, len(variants))
        callbacks.append(SetEpoch(data_collator))
        args.remove_unused_columns = False  # the collator needs every epoch's columns
    else:
        train_dataset = variants[0]
    if mode != "padded":
        disable_cache_for_packing(model)
        logger.info("packing=true: padding-free batches (%s), attention over each example only", mode)
    # kotune has tokenized, truncated and labelled the data; TRL must not re-pack or re-truncate it.
    args.packing, args.padding_free = False, False
    args.dataset_kwargs = {**(args.dataset_kwargs or {}), "skip_prepare_dataset": True}

    class KotuneSFTTrainer(EmbeddingLearningRate, NonFiniteLossGuard, SFTTrainer):
        pass

    sigterm = SigtermCheckpoint()
    trainer = KotuneSFTTrainer(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                               processing_class=tokenizer, data_collator=data_collator,
                               callbacks=[sigterm, *callbacks])
    bind_callbacks(trainer, callbacks)
    write_run_files(cfg, trainer, data_report)

    # --- train ----------------------------------------------------------------------------------------------
    result = train(trainer, sigterm, resume)
    if result is None:
        return 143  # SIGTERM: checkpoint written

    # --- save -----------------------------------------------------------------------------------------------
    is_main = trainer.is_world_process_zero()
    finish(trainer, result)

    # --- evaluate (optional: eval_tasks) --------------------------------------------------------------------
    if cfg.kotune.eval_tasks and is_main:
        del trainer, model  # free the training copy: lm-eval loads what was saved, as a user would
        from kotune.eval.run import evaluate_after_training

        evaluate_after_training(cfg.kotune, args.output_dir)
    return 0
