"""LoRA on a base: the architecture's targets unless the user set them, built by TRL's `get_peft_config`."""

from __future__ import annotations

import logging

from kotune.config.library import lora_config
from kotune.errors import KotuneError
from kotune.models.architectures import spec_for

logger = logging.getLogger(__name__)


def prepare_for_adapters(model, model_args, training_args):
    """What a base needs before a trainable adapter goes on it (k-bit casting, checkpointing inputs)."""
    from peft import prepare_model_for_kbit_training

    if model_args.load_in_4bit or model_args.load_in_8bit:
        return prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=training_args.gradient_checkpointing,
            gradient_checkpointing_kwargs=training_args.gradient_checkpointing_kwargs,
        )
    if training_args.gradient_checkpointing:
        model.enable_input_require_grads()  # checkpointed blocks need an input that requires grad under LoRA
    return model


def attach_lora(model, model_args, training_args, reward_head: bool = False):
    """A trainable LoRA adapter: the user's targets, else the architecture's (GENERIC: every linear layer).
    `reward_head`: on a sequence-classification model, whose new score head trains in full beside the adapter."""
    from peft import get_peft_model

    spec = spec_for(getattr(model.config, "model_type", None))
    model = prepare_for_adapters(model, model_args, training_args)
    lora = lora_config(model_args, spec.targets())
    if reward_head:
        lora.task_type, lora.modules_to_save = "SEQ_CLS", ["score"]
    try:
        model = get_peft_model(model, lora)
    except ValueError as err:
        raise KotuneError(f"lora_target_modules: {err}") from None
    logger.info("LoRA on %s (%s): r=%d alpha=%d dropout=%s", spec.name, lora.target_modules, lora.r,
                lora.lora_alpha, lora.lora_dropout)
    trainable, total = model.get_nb_trainable_parameters()
    logger.info("trainable parameters: %s of %s (%.2f%%)", f"{trainable:,}", f"{total:,}", 100 * trainable / total)
    return model
