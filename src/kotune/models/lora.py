"""LoRA on a base: the architecture's targets unless the user set them, built by TRL's `get_peft_config`."""

from __future__ import annotations

import logging
import re

from kotune.config.library import lora_config
from kotune.errors import KotuneError
from kotune.models import moe
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


def linear_names(model) -> list[str]:
    """The leaf names of the model's linear layers (what lora_target_modules names), in model order, once each."""
    import torch

    kinds = (torch.nn.Linear,)
    names = [name.rsplit(".", 1)[-1] for name, module in model.named_modules()
             if isinstance(module, kinds) or type(module).__name__ in ("Conv1D", "Linear4bit", "Linear8bitLt")]
    return list(dict.fromkeys(names))


def named_targets(targets) -> list[str] | None:
    """lora_target_modules as module names, or None for what PEFT reads itself ("all-linear", a regex). TRL turns a
    one-item list into a bare string, which PEFT would read as a regex over the full module path: a plain name
    stays a name."""
    if isinstance(targets, str):
        return [targets] if targets != "all-linear" and re.fullmatch(r"[\w.]+", targets) else None
    return list(targets) if targets else None


def check_targets(model, targets) -> None:
    """Every name in lora_target_modules must match a module (PEFT refuses only when none does, and trains the rest
    silently); the error lists the model's linear layers to choose from."""
    targets = named_targets(targets)
    if not targets:
        return
    leaves = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    paths = {name for name, _ in model.named_modules()}
    unknown = [t for t in targets if t not in leaves and t not in paths
               and not any(p.endswith(f".{t}") for p in paths)]
    if unknown:
        raise KotuneError(f"lora_target_modules: {', '.join(map(repr, unknown))} "
                          f"{'matches' if len(unknown) == 1 else 'match'} no module of this "
                          f"{getattr(model.config, 'model_type', 'model')} model. Its linear layers: "
                          f"{', '.join(linear_names(model))} (or leave lora_target_modules out for kotune's choice)")


def check_modules_to_save(model, names) -> None:
    """Every name in lora_modules_to_save must end a module's path, as PEFT matches it: PEFT skips a name that matches
    nothing, and the embeddings or head the user asked to train would stay frozen without a word. The error names
    this model's input embeddings and output head."""
    if not names:
        return
    names = [names] if isinstance(names, str) else list(names)
    paths = {module: name for name, module in model.named_modules()}
    unknown = [n for n in names if not any(path.endswith(n) for path in paths.values())]
    if unknown:
        leaf = lambda module: paths.get(module, "?").rsplit(".", 1)[-1]  # noqa: E731
        raise KotuneError(f"lora_modules_to_save: {', '.join(map(repr, unknown))} "
                          f"{'matches' if len(unknown) == 1 else 'match'} no module of this "
                          f"{getattr(model.config, 'model_type', 'model')} model. Its input embeddings are "
                          f"'{leaf(model.get_input_embeddings())}' and its output head "
                          f"'{leaf(model.get_output_embeddings())}': lora_modules_to_save: "
                          f"[{leaf(model.get_input_embeddings())}, {leaf(model.get_output_embeddings())}] trains both "
                          "in full beside the adapter")


def attach_lora(model, model_args, training_args, reward_head: bool = False):
    """A trainable LoRA adapter: the user's targets, else the architecture's (GENERIC: every linear layer).
    `reward_head`: on a sequence-classification model, whose new score head trains in full beside the adapter."""
    from peft import get_peft_model

    spec = spec_for(getattr(model.config, "model_type", None))
    check_targets(model, model_args.lora_target_modules)
    check_modules_to_save(model, model_args.lora_modules_to_save)
    moe.keep_native_targets()
    model = prepare_for_adapters(model, model_args, training_args)
    default = spec.targets()
    if moe.is_moe(model):  # only real modules: PEFT would turn an absent `gate_proj` into the routed experts
        names = linear_names(model)
        default = ([n for n in names if n not in moe.ROUTER_LEAVES and n != "lm_head"] if default == "all-linear"
                   else [t for t in default if t in names] if isinstance(default, list) else default)
    lora = lora_config(model_args, default)
    if isinstance(lora.target_modules, str) and named_targets(lora.target_modules):
        lora.target_modules = named_targets(lora.target_modules)
    lora.target_parameters = moe.expert_target_parameters(model, model_args.lora_target_parameters)
    if lora.target_parameters and lora.lora_dropout:
        logger.info("lora_dropout %s → 0: PEFT's LoRA on fused expert weights (lora_target_parameters) has no "
                    "dropout", lora.lora_dropout)
        lora.lora_dropout = 0.0
    if reward_head:
        lora.task_type, lora.modules_to_save = "SEQ_CLS", ["score"]
    try:
        model = get_peft_model(model, lora)
    except ValueError as err:
        raise KotuneError(f"lora_target_modules: {err} This model's linear layers: "
                          f"{', '.join(linear_names(model))}") from None
    moe.check_router_untouched(model)
    logger.info("LoRA on %s (%s): r=%d alpha=%d dropout=%s%s", spec.name, lora.target_modules, lora.r,
                lora.lora_alpha, lora.lora_dropout,
                f"; trained in full beside it: {', '.join(lora.modules_to_save)}" if lora.modules_to_save else "")
    moe.log_moe_adapter(model, lora.target_parameters)
    trainable, total = model.get_nb_trainable_parameters()
    logger.info("trainable parameters: %s of %s (%.2f%%)", f"{trainable:,}", f"{total:,}", 100 * trainable / total)
    return model
