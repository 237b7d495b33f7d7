"""Pieces every stage shares: logging, pre-flight checks, and the finished output dir."""

from __future__ import annotations

import logging
import os

from kotune.config.schema import RunConfig
from kotune.errors import KotuneError
from kotune.model_card_text import hyperparameters
from kotune.records import plot_loss, write_json, write_resolved_config, write_run_record
from kotune.stages.checkpoints import resolve_resume
from kotune.stages.distributed import start
from kotune.stages.safety import NonFiniteLossError, check_output_dir
from kotune.stages.trackers import configure_trackers

logger = logging.getLogger("kotune")


def preflight(cfg: RunConfig) -> str | None:
    """The start of a run, on every rank before any rank writes: DeepSpeed's process group (if any), the output-dir
    and resume checks, the trackers' environment defaults, and an eval baseline that must be reachable. Returns the
    checkpoint to resume."""
    start(cfg)
    checkpointing_from_memory_plan(cfg)
    args = cfg.training
    resume = resolve_resume(args.output_dir, args.resume_from_checkpoint) if args.resume_from_checkpoint else None
    check_output_dir(args.output_dir, cfg.kotune.overwrite_output_dir, resuming=resume is not None)
    configure_trackers(cfg)
    if cfg.kotune.eval_tasks:
        from kotune.eval.run import check_baseline

        check_baseline(cfg.kotune.eval_baseline)
    if resume:
        logger.info("resuming from %s", resume)
    return resume


def checkpointing_from_memory_plan(cfg: RunConfig) -> None:
    """On a GPU with gradient_checkpointing unset: on only if the memory plan of this run (its model, batch,
    max_length, precision, LoRA, ZeRO, GPUs) does not fit in the GPU's memory without it. Logged with the numbers and
    recorded in run_info.json; the plan failing (no config offline) leaves TRL's default, on."""
    from kotune.config.hardware import PLAN_DECIDES, checkpointing_from_plan

    if cfg.hardware.get("gradient_checkpointing") != PLAN_DECIDES:
        return
    import torch

    from kotune.models.memory import count_parameters, estimate, model_config
    from kotune.stages.registry import get_stage

    try:
        config = model_config(cfg.model.model_name_or_path)
        counts = count_parameters(config, cfg.model)
        reference_copy = get_stage(cfg.stage).reference_copy and not cfg.model.use_peft
        without, with_ = (estimate(cfg, counts, config, max(1, cfg.training.world_size),
                                   cfg.training_values.get("deepspeed"), reference_copy=reference_copy,
                                   checkpointing=on)["per_gpu"] for on in (False, True))
    except Exception as err:  # the plan is advice: a model it cannot read keeps TRL's default
        on, why = True, f"on: TRL's default (the memory plan failed: {type(err).__name__}: {err})"
    else:
        device = torch.cuda.current_device()
        on, why = checkpointing_from_plan(without, with_, torch.cuda.get_device_properties(device).total_memory)
    cfg.training.gradient_checkpointing = cfg.training.activation_checkpointing = on  # 5.x: the old name mirrors
    cfg.training_values["gradient_checkpointing"] = cfg.resolved["gradient_checkpointing"] = on
    cfg.hardware["gradient_checkpointing"] = why
    logger.info("gradient_checkpointing: %s", why)


def eval_callbacks(cfg: RunConfig, tokenizer, eval_dataset) -> list:
    """With an eval split: Korean answer health at each evaluation, and early stopping on metric_for_best_model
    (default eval_loss) when early_stopping_patience is set. Bind them to the trainer with `bind_callbacks`."""
    kot, callbacks = cfg.kotune, []
    if eval_dataset is None:
        return callbacks
    from kotune.stages.answer_health import has_prompts

    if kot.answer_health_prompts and has_prompts(eval_dataset):
        from kotune.stages.answer_health import AnswerHealth, eval_prompts

        callbacks.append(AnswerHealth(tokenizer, eval_prompts(eval_dataset, kot.answer_health_prompts)))
    if kot.early_stopping_patience is not None:
        from transformers import EarlyStoppingCallback

        logger.info("early stopping: after %d evaluations without an improvement over %s of %s",
                    kot.early_stopping_patience, kot.early_stopping_threshold, cfg.training.metric_for_best_model)
        callbacks.append(EarlyStoppingCallback(kot.early_stopping_patience, kot.early_stopping_threshold))
    return callbacks


def bind_callbacks(trainer, callbacks: list) -> None:
    """Callbacks that log through the trainer get it once it exists."""
    for callback in callbacks:
        if hasattr(callback, "bind"):
            callback.bind(trainer)


def write_run_files(cfg: RunConfig, trainer, data_report: dict) -> None:
    """Config, run record and data report, written by the main process once the run is about to start."""
    out = cfg.training.output_dir
    log_trainable_dtype(trainer.model)
    trainer.accelerator.wait_for_everyone()  # every rank has passed preflight before rank 0 writes anything
    if not trainer.is_world_process_zero():
        return
    os.makedirs(out, exist_ok=True)
    write_resolved_config(out, cfg.resolved)
    files = [s.id for s in cfg.kotune.dataset_mixture.datasets] if cfg.kotune.dataset_mixture else []
    distributed = str(getattr(trainer.accelerator, "distributed_type", "NO")).split(".")[-1]
    write_run_record(out, files, trainer.args.world_size, {"distributed_type": distributed,
                                                          "precision": {"bf16": trainer.args.bf16,
                                                                        "fp16": trainer.args.fp16,
                                                                        **cfg.hardware},
                                                          "hyperparameters": hyperparameters(cfg, trainer.args)})
    write_json(os.path.join(out, "data_report.json"), data_report)
    use_kotune_card(trainer)


def use_kotune_card(trainer) -> None:
    """TRL writes its own README.md at every checkpoint and before every push (`create_model_card`); kotune's card
    (kotune.model_card) takes its place, so what reaches the Hub is kotune's, rebuilt from the files at that time."""
    def create_model_card(*_, **__):
        write_card(trainer)

    trainer.create_model_card = create_model_card


def write_card(trainer) -> None:
    """README.md in output_dir from the run's files, the live tokenizer and log history (main process only). A card
    that fails is logged, never the end of a finished run."""
    if not trainer.is_world_process_zero():
        return
    from kotune.model_card import write_model_card

    try:
        path = write_model_card(trainer.args.output_dir, trainer.processing_class, trainer.state.log_history)
    except Exception as err:  # documentation: the model is saved whatever happens here
        logger.warning("model card not written: %s: %s", type(err).__name__, err)
    else:
        logger.info("model card: %s", path)


def log_trainable_dtype(model) -> None:
    """Say so when trainable weights are not in the configured dtype: on a 4-bit/8-bit base TRL keeps LoRA A/B in
    bfloat16 (the QLoRA paper's choice), whatever `dtype` says; `dtype` then applies to the frozen base."""
    dtypes = sorted({str(p.dtype).replace("torch.", "") for p in model.parameters() if p.requires_grad})
    quantized = getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False)
    if quantized and dtypes:
        logger.info("trainable parameters are %s on the quantized base (TRL casts LoRA weights to bfloat16 as in "
                    "the QLoRA paper); the adapter is saved in that dtype", "/".join(dtypes))


def train(trainer, sigterm, resume: str | None):
    """trainer.train() with the run-safety contract: a non-finite loss is a user-facing error, and a SIGTERM
    returns None after its checkpoint is written."""
    from kotune.stages.fsdp import prepare

    prepare(trainer)
    try:
        result = trainer.train(resume_from_checkpoint=resume)
    except NonFiniteLossError as err:
        raise KotuneError(str(err)) from None
    finally:
        sigterm.restore()
    if sigterm.received:
        logger.warning("stopped by SIGTERM; checkpoint saved in %s. Resume with --resume_from_checkpoint=true",
                       trainer.args.output_dir)
        return None
    return result


def finish(trainer, train_result) -> None:
    """Final model/adapter, tokenizer with chat template, generation config, metrics, state, loss curve and model
    card; then, with push_to_hub, one push of the whole output_dir (so README.md and every file above go up)."""
    out = trainer.args.output_dir
    config = getattr(trainer.model, "config", None)
    if config is not None and hasattr(config, "use_cache"):
        config.use_cache = True  # turned off for training (packing, checkpointing); inference wants it
    from kotune.stages.fsdp import whole_final_save

    whole_final_save(trainer)
    trainer.save_model(out, _internal_call=True)  # with push_to_hub, the push waits for the files below
    metrics = dict(train_result.metrics)
    # a reward that scored no row of the run (all None, e.g. exact_answer on rows without an answer) has a None mean,
    # which the Trainer's table cannot print
    trainer.log_metrics("train", {k: v for k, v in metrics.items() if v is not None})
    trainer.save_metrics("train", metrics)
    trainer.save_state()
    if trainer.is_world_process_zero():
        model = trainer.model
        generation_config = getattr(model, "generation_config", None)
        if generation_config is not None:
            generation_config.save_pretrained(out)
        if plot_loss(trainer.state.log_history, os.path.join(out, "loss.png")):
            logger.info("loss curve: %s", os.path.join(out, "loss.png"))
        write_card(trainer)
        logger.info("done: model and tokenizer saved in %s", out)
    if trainer.args.push_to_hub:  # every rank (the save inside may gather ZeRO-3 shards); uploads output_dir
        trainer.push_to_hub(commit_message="End of training")
    close_process_group()


def close_process_group() -> None:
    """Leave the process group cleanly: a gloo/DeepSpeed group torn down at interpreter exit can abort the
    process ('terminate called without an active exception') after the run has succeeded."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
