"""One run of a preference or reward stage (DPO, ORPO, SimPO, KTO, reward model, GRPO), section by section.

Every such stage reads its config, tokenizer and template the same way, prepares its data under
`main_process_first`, loads its model(s), builds its TRL trainer with kotune's NaN guard and SIGTERM checkpoint,
writes the run files and saves like SFT. What differs is a `Recipe`: how to build the data, the models and the
trainer. Sections run in a fixed order: logging, config, tokenizer, data, model, trainer, train, save.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

logger = logging.getLogger("kotune")


@dataclass(frozen=True)
class Recipe:
    """What one stage brings to the shared run."""

    # (cfg, tokenizer) -> (train dataset, eval dataset or None, data report)
    data: Callable
    # (cfg, tokenizer) -> the model keyword arguments of its trainer (model=..., ref_model=..., reward_funcs=...)
    models: Callable
    # () -> the trainer class (imported late: TRL is heavy)
    trainer: Callable[[], type]
    # (trainer) -> None: tidy the model before it is saved (e.g. drop DPO's frozen 'ref' adapter)
    before_save: Callable | None = None
    # a policy trained on chosen answers: watch their likelihood (kotune.stages.displacement)
    watch_chosen: bool = False


def run_stage(argv: list[str], stage: str, recipe: Recipe) -> int:
    # --- logging --------------------------------------------------------------------------------------------
    from kotune.logs import setup_logging

    setup_logging()

    # --- config ---------------------------------------------------------------------------------------------
    from kotune.config.loading import load_config

    cfg = load_config(argv, stage=stage)  # a user mistake is reported here, before torch and TRL load
    from kotune.stages.common import bind_callbacks, eval_callbacks, finish, preflight, train, write_run_files

    resume = preflight(cfg)  # also starts DeepSpeed's process group when the config names one
    args = cfg.training

    # --- tokenizer and prompt format (an SFT output dir brings its own chat template) -------------------------
    from kotune.data.prompt_formats import prepare_chat_tokenizer
    from kotune.models.adapter_dirs import adapter_base
    from kotune.models.loading import load_model_config, load_tokenizer

    m = cfg.model
    path = m.model_name_or_path
    base_config = load_model_config(adapter_base(path) or path, m.trust_remote_code, m.model_revision)
    tokenizer = load_tokenizer(path, m.trust_remote_code, m.model_revision)
    prepare_chat_tokenizer(tokenizer, cfg, base_config.model_type, path)

    # --- data -----------------------------------------------------------------------------------------------
    with args.main_process_first(desc=f"preparing {stage} data"):
        train_dataset, eval_dataset, data_report = recipe.data(cfg, tokenizer)
    logger.info("%s rows: %d%s", stage, len(train_dataset),
                f", eval rows: {len(eval_dataset)}" if eval_dataset is not None else "")

    # --- model(s) -------------------------------------------------------------------------------------------
    from transformers import set_seed

    set_seed(args.seed)
    models = recipe.models(cfg, tokenizer)

    # --- trainer --------------------------------------------------------------------------------------------
    from kotune.stages.safety import SigtermCheckpoint
    from kotune.stages.trackers import tracker_callbacks

    sigterm = SigtermCheckpoint()
    callbacks = eval_callbacks(cfg, tokenizer, eval_dataset) + tracker_callbacks(cfg)
    trainer = recipe.trainer()(**models, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                               processing_class=tokenizer, callbacks=[sigterm, *callbacks])
    bind_callbacks(trainer, callbacks)
    if recipe.watch_chosen:
        from kotune.stages.displacement import ChosenLikelihoodWatch, chosen_probe, watch_first

        watch_first(trainer, ChosenLikelihoodWatch(chosen_probe(train_dataset), stage))
    write_run_files(cfg, trainer, data_report)

    # --- train ----------------------------------------------------------------------------------------------
    result = train(trainer, sigterm, resume)
    if result is None:
        return 143  # SIGTERM: checkpoint written

    # --- save -----------------------------------------------------------------------------------------------
    if recipe.before_save is not None:
        recipe.before_save(trainer)
    finish(trainer, result)
    return 0


def pairs(cfg, tokenizer):
    """The {prompt_ids, chosen_ids, rejected_ids} rows every pairwise stage reads (kotune.data.preference)."""
    from kotune.data.preference import build_preference_data

    kot = cfg.kotune
    return build_preference_data(kot.dataset_mixture, tokenizer, cfg.training.max_length, kot.max_prompt_length,
                                 kot.strict, kot.eval_split_size, thinking=kot.thinking)


def policy_only(cfg, tokenizer) -> dict:
    """A reference-free stage's model: the policy alone (no frozen copy, no 'ref' adapter)."""
    from kotune.stages.policy import load_policy

    model, _ = load_policy(cfg.model, cfg.training, tokenizer, reference=False, stage=cfg.stage)
    return {"model": model}


def policy_and_reference(cfg, tokenizer) -> dict:
    from kotune.stages.policy import load_policy

    model, ref = load_policy(cfg.model, cfg.training, tokenizer, reference=True, stage=cfg.stage)
    return {"model": model, "ref_model": ref}


def drop_reference_adapter(trainer) -> None:
    """The frozen 'ref' adapter TRL adds is the SFT adapter, already on disk: the output keeps 'default' only."""
    if getattr(trainer.model, "peft_config", None) and "ref" in trainer.model.peft_config:
        trainer.model.delete_adapter("ref")


def legacy_pairwise(base: type) -> type:
    """ORPO/CPO (trl.experimental) tokenize text pairs row by row; this feeds them kotune's pre-tokenized pairs (the
    prompt exactly as SFT inference sends it) in the columns they expect, with the NaN guard."""
    from kotune.stages.safety import NonFiniteLossGuard

    class KotunePairwise(NonFiniteLossGuard, base):
        def tokenize_row(self, feature, model=None):
            if "prompt_ids" not in feature:
                return super().tokenize_row(feature, model)
            prompt = list(feature["prompt_ids"])
            row = {"prompt_input_ids": prompt, "prompt_attention_mask": [1] * len(prompt)}
            for name in ("chosen", "rejected"):
                answer = list(feature[f"{name}_ids"])
                row[f"{name}_input_ids"] = prompt + answer
                row[f"{name}_attention_mask"] = [1] * (len(prompt) + len(answer))
                row[f"{name}_labels"] = [-100] * len(prompt) + answer
            return row

    KotunePairwise.__name__ = KotunePairwise.__qualname__ = f"Kotune{base.__name__}"
    return KotunePairwise
