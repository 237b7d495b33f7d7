"""The libraries' own config objects, built from checked values before anything is written.

TRL's ModelConfig and the stage's training config (SFTConfig, DPOConfig, ...), then PEFT's LoraConfig and
transformers' BitsAndBytesConfig through TRL's own helpers. Each library check that fails becomes one line that
names the kotune key, so every accepted key either takes effect or is refused up front. This module imports TRL
(seconds): the fast checks in `kotune.config.validation` run first.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from trl import ModelConfig

from kotune.config.library_schema import load_class

logger = logging.getLogger("kotune.config")

# Names the libraries use in their messages -> the kotune (TRL ModelConfig) key that sets them.
LIBRARY_NAMES = {
    "r": "lora_r", "target_modules": "lora_target_modules", "target_parameters": "lora_target_parameters",
    "task_type": "lora_task_type", "modules_to_save": "lora_modules_to_save", "lora_alpha": "lora_alpha",
    "lora_dropout": "lora_dropout", "use_dora": "use_dora", "use_rslora": "use_rslora",
    "bnb_4bit_compute_dtype": "dtype", "bnb_4bit_quant_type": "bnb_4bit_quant_type",
    "bnb_4bit_use_double_quant": "use_bnb_nested_quant", "bnb_4bit_quant_storage": "bnb_4bit_quant_storage",
}


@dataclass
class KotuneModelConfig(ModelConfig):
    """TRL's ModelConfig with QLoRA's double quantization on by default."""

    use_bnb_nested_quant: bool = field(
        default=True, metadata={"help": "Double (nested) quantization of the 4-bit constants; saves ~0.4 bit/param."}
    )
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow custom model code from the model dir."})


def _keys_named(message: str, keys) -> list[str]:
    """The config keys a library message mentions, as whole words (longest first: `lora_r` before `r`)."""
    found = []
    for key in sorted(keys, key=len, reverse=True):
        if re.search(rf"(?<![\w-]){re.escape(key)}(?!\w)", message) and not any(key in f for f in found):
            found.append(key)
    return found


def _problem(err: Exception, what: str, keys, renames: dict[str, str] | None = None) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    named = _keys_named(text, keys)
    names = sorted({(renames or {}).get(k, k) for k in named})
    return f"{', '.join(names) if names else what}: {text}"


def build_model_config(values: dict[str, Any]) -> tuple[ModelConfig | None, str | None]:
    """(TRL's ModelConfig with kotune's defaults, or None and the refusal naming the key)."""
    try:
        return KotuneModelConfig(**values), None
    except (ValueError, TypeError) as err:
        return None, _problem(err, "model settings", values)


def build_training_config(class_path: str, values: dict[str, Any]):
    """(the stage's training config, or None and the refusal naming the key)."""
    cls = load_class(class_path)
    try:
        return cls(**checkpointing_by_new_name(cls, values)), None
    except (ValueError, TypeError) as err:
        return None, _problem(err, "training settings", values)


def checkpointing_by_new_name(cls, values: dict[str, Any]) -> dict[str, Any]:
    """transformers 5.x renamed gradient_checkpointing(_kwargs) to activation_checkpointing(_kwargs) and warns in
    every run where only the old name is set, as TRL's configs do by default (True). kotune's key keeps TRL's name;
    its value (or TRL's default) goes in under the new name too, which the old one then mirrors."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    out = dict(values)
    for old, new in (("gradient_checkpointing", "activation_checkpointing"),
                     ("gradient_checkpointing_kwargs", "activation_checkpointing_kwargs")):
        if old in fields and new in fields and out.get(new) is None:
            value = out.get(old, fields[old].default)
            if value is not None and value is not dataclasses.MISSING:
                out[new] = value
    return out


def quantization_config(model_args):
    """TRL's BitsAndBytesConfig for the model args (NF4 + double quantization for 4-bit, LLM.int8 for 8-bit)."""
    from trl import get_quantization_config

    dtype = model_args.dtype if model_args.dtype not in (None, "auto") else None  # None: float32 compute
    return get_quantization_config(dataclasses.replace(model_args, dtype=dtype))


def lora_config(model_args, default_targets: list[str] | str | None = None):
    """TRL's LoraConfig for the model args; `default_targets` (the architecture's) only when the user set none."""
    from trl import get_peft_config

    if not model_args.lora_target_modules and default_targets is not None:
        model_args = dataclasses.replace(model_args, lora_target_modules=default_targets)
    return get_peft_config(model_args)


def library_problems(model_args, task_type: str = "CAUSAL_LM") -> list[str]:
    """What BitsAndBytesConfig and LoraConfig refuse in these model args, each naming the kotune key. `task_type`:
    the stage's own adapter type (a reward model's SEQ_CLS), accepted beside the default."""
    problems = []
    if model_args.use_peft and model_args.lora_task_type not in ("CAUSAL_LM", task_type):
        problems.append(f"lora_task_type: {model_args.lora_task_type!r} does not fit this stage, which trains "
                        f"{'a causal LM' if task_type == 'CAUSAL_LM' else 'a ' + task_type + ' model'}: use "
                        f"{task_type}, or leave it out")
        return problems
    for what, build in (("quantization", quantization_config), ("LoRA", lora_config)):
        try:
            build(model_args)
        except (ValueError, TypeError) as err:
            problems.append(_problem(err, f"{what} settings", LIBRARY_NAMES, LIBRARY_NAMES))
    return problems

