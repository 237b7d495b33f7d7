"""Load a base: architecture detection, bnb 4/8-bit quantization, LoRA targets per architecture, pad ≠ EOS."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from kotune.errors import KotuneError

logger = logging.getLogger(__name__)

# peft#294: GPT-NeoX fuses q/k/v into one projection; Llama and Mistral keep them apart.
LORA_TARGETS = {
    "gpt_neox": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}
KNOWN_ARCHITECTURES = tuple(LORA_TARGETS)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _hub_error(name: str, err: Exception) -> KotuneError:
    if Path(name).expanduser().exists():
        return KotuneError(f"model_name_or_path: cannot load '{name}': {err}")
    return KotuneError(
        f"model_name_or_path: '{name}' is not a local directory and could not be fetched from the Hub "
        f"({type(err).__name__}). Check the name, or download it first and point model_name_or_path at the folder."
    )


def load_model_config(name: str, trust_remote_code: bool = False, revision: str = "main"):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code, revision=revision)
    except (OSError, ValueError) as err:
        raise _hub_error(name, err) from None


def architecture(config) -> str:
    """`gpt_neox`, `llama`, `mistral`, or the model_type of any other causal LM (handled generically)."""
    return getattr(config, "model_type", "unknown")


def lora_targets(arch: str, override: list[str] | str | None) -> list[str] | str:
    """The user's list wins; otherwise the preset, or every linear layer for other architectures."""
    if override:
        return override
    return LORA_TARGETS.get(arch, "all-linear")


def load_tokenizer(name: str, trust_remote_code: bool = False, revision: str = "main"):
    """Tokenizer with a pad token distinct from EOS (otherwise EOS is masked and the model never learns to stop)."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code, revision=revision)
    except (OSError, ValueError) as err:
        raise _hub_error(name, err) from None
    if tok.eos_token_id is None:
        raise KotuneError(f"the tokenizer of '{name}' has no EOS token; set eos_token in its tokenizer_config.json")
    if tok.pad_token_id is None or tok.pad_token_id == tok.eos_token_id:
        if tok.unk_token_id is not None and tok.unk_token_id != tok.eos_token_id:
            tok.pad_token = tok.unk_token
            logger.info("tokenizer has no pad token distinct from EOS: pad = %s (id %d)", tok.pad_token, tok.pad_token_id)
        else:
            tok.add_special_tokens({"pad_token": "<|pad|>"})
            logger.info("tokenizer has no pad token distinct from EOS: added <|pad|> (id %d)", tok.pad_token_id)
    tok.padding_side = "right"
    return tok


def quantization_config(model_args):
    """bitsandbytes settings: NF4 + double quantization for 4-bit, LLM.int8 for 8-bit, None otherwise."""
    from transformers import BitsAndBytesConfig

    compute = DTYPES.get(model_args.dtype or "float32", torch.float32)
    if model_args.load_in_4bit:
        storage = model_args.bnb_4bit_quant_storage or "uint8"
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=model_args.bnb_4bit_quant_type,
            bnb_4bit_use_double_quant=model_args.use_bnb_nested_quant,
            bnb_4bit_compute_dtype=compute,
            bnb_4bit_quant_storage=storage,
        )
    if model_args.load_in_8bit:
        return BitsAndBytesConfig(load_in_8bit=True)
    return None


def disable_cpu_bf16_repack(model) -> int:
    """Keep bitsandbytes' CPU 4-bit layers on the autograd-safe path.

    bitsandbytes 0.50 repacks 4-bit weights for an AVX512-bf16 kernel on the first no-grad forward (an eval pass,
    generate, DPO's reference pass). That kernel has no autograd: LoRA gradients through it are silently wrong
    (Llama) or crash (GPT-NeoX). Returns the number of layers changed.
    """
    import bitsandbytes as bnb

    n = 0
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit) and getattr(module, "support_avx512bf16_for_cpu", False):
            module.support_avx512bf16_for_cpu = False
            n += 1
    return n


def load_model(model_args, training_args, tokenizer, deepspeed_stage: int | None = None):
    """The base model, quantized if asked, with LoRA attached when `use_peft` is set."""
    model = load_base(model_args.model_name_or_path, model_args, training_args, tokenizer, deepspeed_stage)
    if not model_args.use_peft:
        if training_args.gradient_checkpointing:
            model.config.use_cache = False
        return model
    return attach_lora(model, model_args, training_args)


def load_base(path: str, model_args, training_args, tokenizer, deepspeed_stage: int | None = None):
    """Weights from `path`, quantized per `model_args`, with the CPU 4-bit fix and the tokenizer's special tokens."""
    from transformers import AutoModelForCausalLM

    quant = quantization_config(model_args)
    dtype = model_args.dtype if model_args.dtype in (None, "auto") else DTYPES[model_args.dtype]
    kwargs = dict(
        dtype=dtype,
        trust_remote_code=model_args.trust_remote_code,
        revision=model_args.model_revision,
        attn_implementation=model_args.attn_implementation,
    )
    if quant is not None:
        kwargs["quantization_config"] = quant
        if deepspeed_stage != 3:  # peft#1550: ZeRO-3 places the shards itself
            kwargs["device_map"] = {"": _local_device(training_args)}
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as err:
        raise _hub_error(path, err) from None

    if not torch.cuda.is_available() and model_args.load_in_4bit:
        n = disable_cpu_bf16_repack(model)
        if n:
            logger.info("CPU 4-bit: AVX512-bf16 repack disabled on %d layers (it breaks LoRA gradients)", n)

    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
        logger.info("resized embeddings to %d for the added pad token", len(tokenizer))
    sync_special_tokens(model, tokenizer)
    return model


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


def attach_lora(model, model_args, training_args):
    from peft import LoraConfig, get_peft_model

    arch = architecture(model.config)
    model = prepare_for_adapters(model, model_args, training_args)
    targets = lora_targets(arch, model_args.lora_target_modules)
    lora = LoraConfig(
        r=model_args.lora_r,
        lora_alpha=model_args.lora_alpha,
        lora_dropout=model_args.lora_dropout,
        target_modules=targets,
        modules_to_save=model_args.lora_modules_to_save,
        use_rslora=model_args.use_rslora,
        use_dora=model_args.use_dora,
        task_type="CAUSAL_LM",
    )
    try:
        model = get_peft_model(model, lora)
    except ValueError as err:
        raise KotuneError(f"lora_target_modules: {err}") from None
    logger.info("LoRA on %s (%s): r=%d alpha=%d dropout=%s", arch, targets, lora.r, lora.lora_alpha, lora.lora_dropout)
    trainable, total = model.get_nb_trainable_parameters()
    logger.info("trainable parameters: %s of %s (%.2f%%)", f"{trainable:,}", f"{total:,}", 100 * trainable / total)
    return model


def sync_special_tokens(model, tokenizer) -> None:
    """Model config and generation config carry the tokenizer's EOS/pad/BOS, so generate() stops where training taught."""
    for cfg in (model.config, getattr(model, "generation_config", None)):
        if cfg is None:
            continue
        cfg.eos_token_id = tokenizer.eos_token_id
        cfg.pad_token_id = tokenizer.pad_token_id
        if tokenizer.bos_token_id is not None:
            cfg.bos_token_id = tokenizer.bos_token_id


def _local_device(training_args) -> str:
    if training_args.use_cpu or not torch.cuda.is_available():
        return "cpu"
    import os

    return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
