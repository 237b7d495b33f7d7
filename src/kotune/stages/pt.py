"""Continued pretraining on raw Korean text (the body of `train/pt.py` and `kotune pt`).

    python train/pt.py configs/pt/polyglot-ko-tiny-demo.yaml [--key=value ...]
    accelerate launch train/pt.py CONFIG.yaml [--key=value ...]

Documents (a `text` column, .txt files, a Hub corpus) end with EOS and are packed into blocks of max_length tokens;
every token is trained, attention never crosses a document (`kotune.data.pt_dataset`). An eval split logs
eval_perplexity = exp(eval_loss). No chat template is installed or trained: the tokenizer is saved as the base has it.

Sections run in a fixed order: logging, config, tokenizer, data, model, trainer, train, save.
"""

from __future__ import annotations

import logging
import math


logger = logging.getLogger("kotune.pt")


def main(argv: list[str]) -> int:
    # --- logging --------------------------------------------------------------------------------------------
    from kotune.logs import setup_logging

    setup_logging()

    # --- config ---------------------------------------------------------------------------------------------
    from kotune.config.loading import load_config

    cfg = load_config(argv, stage="pt")  # a user mistake is reported here, before torch and TRL load
    from kotune.stages.common import finish, preflight, train, write_run_files
    from kotune.vocab.freeze import EmbeddingLearningRate, apply_stage, check_stage

    check_stage(cfg)  # eeve_stage / embedding_learning_rate against the model dir's kotune_vocab.json

    resume = preflight(cfg)  # also starts DeepSpeed's process group when the config names one
    args, model_args = cfg.training, cfg.model

    # --- tokenizer ------------------------------------------------------------------------------------------
    from kotune.models.loading import load_model_config, load_tokenizer

    base_config = load_model_config(model_args.model_name_or_path, model_args.trust_remote_code,
                                    model_args.model_revision)
    tokenizer = load_tokenizer(model_args.model_name_or_path, model_args.trust_remote_code, model_args.model_revision)

    # --- data -----------------------------------------------------------------------------------------------
    from kotune.data.packing import bfd_pack, log_bfd_step_change
    from kotune.data.prepare import prepare_pt_data, pt_batching
    from kotune.data.pt_dataset import describe

    batching = pt_batching(cfg, base_config)
    train_dataset, eval_dataset, data_report, _ = prepare_pt_data(cfg, tokenizer, batching)
    logger.info("pt data: %s", describe(data_report))
    if batching == "bfd":
        rows = len(train_dataset)
        train_dataset = bfd_pack(train_dataset, args.max_length)
        log_bfd_step_change(rows, len(train_dataset), args)
    logger.info("training rows: %d%s", len(train_dataset),
                f", eval rows: {len(eval_dataset)}" if eval_dataset is not None else "")

    # --- model ----------------------------------------------------------------------------------------------
    from transformers import set_seed

    from kotune.config.deepspeed_file import deepspeed_stage
    from kotune.models.loading import load_model

    set_seed(args.seed)  # LoRA's initial weights come from the global RNG: same seed, same run
    model = load_model(model_args, args, tokenizer, deepspeed_stage=deepspeed_stage(args.deepspeed))
    model = apply_stage(model, cfg)  # eeve_stage: the rows and layers this stage trains, the rest frozen

    # --- trainer --------------------------------------------------------------------------------------------
    from trl import SFTTrainer

    from kotune.data.packing import collator, disable_cache_for_packing
    from kotune.stages.common import bind_callbacks, eval_callbacks
    from kotune.stages.safety import NonFiniteLossGuard, SigtermCheckpoint
    from kotune.stages.trackers import tracker_callbacks

    if batching != "padded":
        disable_cache_for_packing(model)
        logger.info("packing=true: padding-free batches (%s), attention over each document only", batching)
    # kotune has tokenized and packed the documents; TRL must not re-pack or re-truncate them.
    args.packing, args.padding_free = False, False
    args.dataset_kwargs = {**(args.dataset_kwargs or {}), "skip_prepare_dataset": True}
    callbacks = eval_callbacks(cfg, tokenizer, eval_dataset) + tracker_callbacks(cfg)

    class KotunePTTrainer(EmbeddingLearningRate, PerplexityLog, NonFiniteLossGuard, SFTTrainer):
        pass

    sigterm = SigtermCheckpoint()
    trainer = KotunePTTrainer(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                              processing_class=tokenizer, data_collator=collator(tokenizer, batching),
                              callbacks=[sigterm, *callbacks])
    bind_callbacks(trainer, callbacks)
    write_run_files(cfg, trainer, data_report)

    # --- train ----------------------------------------------------------------------------------------------
    result = train(trainer, sigterm, resume)
    if result is None:
        return 143  # SIGTERM: checkpoint written

    # --- save -----------------------------------------------------------------------------------------------
    finish(trainer, result)
    return 0


def perplexity(loss: float) -> float:
    """exp(loss), inf past what a float holds.

    >>> perplexity(0.0), round(perplexity(2.0), 3), perplexity(1000.0)
    (1.0, 7.389, inf)
    """
    return math.exp(loss) if loss < 700 else math.inf


class PerplexityLog:
    """Trainer mixin: `eval_perplexity` = exp(eval_loss) beside every eval loss, in the log, `log_history`
    (trainer_state.json) and the metrics `evaluate()` returns. It ranks checkpoints as eval_loss does (keep
    metric_for_best_model: eval_loss; naming eval_perplexity needs greater_is_better: false)."""

    def log(self, logs: dict, *args, **kwargs) -> None:
        if "eval_loss" in logs:
            logs["eval_perplexity"] = round(perplexity(logs["eval_loss"]), 4)
        super().log(logs, *args, **kwargs)
