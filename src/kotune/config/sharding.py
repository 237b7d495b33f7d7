"""Sharded training in a config: DeepSpeed ZeRO and FSDP2, and the combinations that cannot work, refused by name
before anything loads. No heavy imports.

FSDP is written as TRL and transformers take it (`fsdp: true` or `"full_shard auto_wrap"`, plus `fsdp_config`),
or as axolotl writes it (`fsdp_version: 2` at the top level). transformers 5 runs FSDP2 by default and deprecates
FSDP1, so kotune runs FSDP2 only. kotune's defaults, logged: checkpoints sharded (each rank writes its own shard, so
no rank gathers the whole model mid-run), and the final save whole (`kotune.stages.fsdp`).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from kotune.config.deepspeed_file import read_deepspeed_config

logger = logging.getLogger("kotune.config")

FSDP_VERSION = "fsdp_version"
# The fsdp_config keys transformers 5.23 reads (accelerate's `fsdp_` prefix is dropped first); it ignores any other.
FSDP_KEYS = ("version", "min_num_params", "transformer_layer_cls_to_wrap", "auto_wrap_policy", "cpu_offload",
             "cpu_ram_efficient_loading", "state_dict_type", "activation_checkpointing", "reshard_after_forward",
             "forward_prefetch", "backward_prefetch", "use_orig_params", "sync_module_states", "limit_all_gathers",
             "xla", "xla_fsdp_v2", "xla_fsdp_grad_ckpt", "xla_fsdp_settings")
ACCELERATE_NAMES = {"offload_params": "cpu_offload"}  # accelerate's config file name → transformers' key
ON = "on"  # `fsdp: true` while the config is checked: transformers types the field as a (legacy) string


def fsdp_keys(raw: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    """`fsdp_version: 2` at the top level → `fsdp: true` with `fsdp_config.version: 2`; FSDP1 refused."""
    if FSDP_VERSION not in raw and not isinstance(raw.get("fsdp"), bool):
        return raw
    raw = dict(raw)
    if isinstance(raw.get("fsdp"), bool):
        raw["fsdp"] = ON if raw["fsdp"] else None
    version = raw.pop(FSDP_VERSION, None)
    if version in (None, False):
        return raw
    if version != 2:
        problems.append(f"fsdp_version: {version!r}: kotune runs FSDP2 only (transformers 5 deprecates FSDP1); "
                        "set fsdp_version: 2")
        return raw
    config = raw.get("fsdp_config")
    raw["fsdp_config"] = {**(config if isinstance(config, dict) else {}), "version": 2}
    raw["fsdp"] = raw.get("fsdp") or ON
    return raw


def fsdp_config_problems(train: dict, model: dict) -> list[str]:
    """With `fsdp` on: the config as FSDP2 takes it, with kotune's defaults; what cannot combine, by name."""
    if not train.get("fsdp"):
        if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true":  # an accelerate config with FSDP
            return fsdp_model_problems(model)
        return []
    if train["fsdp"] == ON:
        train["fsdp"] = True
    config = train.get("fsdp_config")
    if isinstance(config, str):
        return [f"fsdp_config: '{config}': give the settings inline as a mapping (e.g. {{version: 2, "
                "cpu_offload: false}}); a JSON file path is not read by kotune's checks"]
    config = {(k[5:] if k.startswith("fsdp_") else k): v for k, v in (config or {}).items()}
    config = {ACCELERATE_NAMES.get(k, k): v for k, v in config.items()}
    problems = [f"fsdp_config.{key}: unknown key (transformers reads {', '.join(FSDP_KEYS[:11])}, ...)"
                for key in config if key not in FSDP_KEYS]
    if str(config.get("version", 2)) != "2":
        problems.append(f"fsdp_config.version: {config['version']!r}: kotune runs FSDP2 only (transformers 5 "
                        "deprecates FSDP1); set version: 2")
    if train.get("deepspeed"):
        problems.append("fsdp and deepspeed are both set: they are two ways to shard the same model; choose one")
    if config.get("activation_checkpointing") and train.get("gradient_checkpointing"):
        problems.append("fsdp_config.activation_checkpointing and gradient_checkpointing are both on: they do the "
                        "same thing; keep activation_checkpointing (FSDP's own: no extra all-gather in the backward "
                        "pass) and set gradient_checkpointing: false")
    problems += fsdp_model_problems(model)
    if "state_dict_type" not in config:
        config["state_dict_type"] = "SHARDED_STATE_DICT"
        logger.info("FSDP: checkpoints sharded (fsdp_config.state_dict_type=SHARDED_STATE_DICT); the final model "
                    "is saved whole")
    train["fsdp_config"] = config
    return problems


def fsdp_model_problems(model: dict) -> list[str]:
    if model.get("load_in_8bit"):
        return ["load_in_8bit cannot be combined with FSDP (bitsandbytes' int8 weights cannot be sharded): use "
                "load_in_4bit (QLoRA, with bnb_4bit_quant_storage equal to dtype) or drop the quantization"]
    if model.get("load_in_4bit"):
        return quant_storage_problem(model, "FSDP", "FSDP flattens the 4-bit storage as this dtype")
    return []


def quant_storage_problem(model: dict, engine: str, why: str) -> list[str]:
    """Sharding a 4-bit base needs its packed storage in the compute dtype (peft#1550); kotune sets it when unset."""
    dtype = model.get("dtype") or "float32"
    storage = model.get("bnb_4bit_quant_storage")
    if storage is None:
        model["bnb_4bit_quant_storage"] = dtype
        logger.info("%s + 4-bit: bnb_4bit_quant_storage=%s (the compute dtype; %s)", engine, dtype, why)
    elif storage != dtype:
        return [f"bnb_4bit_quant_storage ({storage}) must equal dtype ({dtype}) under {engine} (peft#1550); leave it "
                "unset and kotune sets it"]
    return []


def deepspeed_problems(ds: Any, model: dict) -> list[str]:
    conf, problem = read_deepspeed_config(ds)
    if problem:
        return [problem]
    stage = (conf.get("zero_optimization") or {}).get("stage")
    if stage == 3 and model.get("load_in_8bit"):
        return ["load_in_8bit cannot be combined with ZeRO-3: use load_in_4bit with bnb_4bit_quant_storage equal to "
                "dtype, or ZeRO-2"]
    if stage == 3 and model.get("load_in_4bit"):
        return quant_storage_problem(model, "ZeRO-3", "ZeRO-3 shards the 4-bit storage as this dtype")
    return []
