"""The memory plan of a run: bytes per GPU, term by term, from the model's config alone (built on the meta device).

`kotune plan` prints it; at the start of a GPU run it decides gradient checkpointing when the user left it unset.
Memory per GPU is the sum of: weights (by dtype and quantization), gradients and AdamW state of the trainable
parameters (sharded by ZeRO, moved to host by offload), activations (with or without gradient checkpointing) and
the logits of one micro-batch, plus a fixed allowance for the CUDA context and allocator.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from kotune.config.deepspeed_file import read_deepspeed_config
from kotune.errors import KotuneError
from kotune.models.adapter_dirs import adapter_base
from kotune.models.architectures import offline_config_dir, spec_for

ROOT = Path(__file__).resolve().parents[3]  # the checkout: configs/models/ holds offline configs of known Hub ids
GiB = 1024**3
BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "auto": 2, None: 4}
CONTEXT_OVERHEAD = 0.9 * GiB  # CUDA context, cuBLAS workspace, allocator fragmentation


def model_config(name: str, root: Path = ROOT):
    """The base's config: from its folder, from an SFT adapter's base, or from configs/models/ for known Hub ids."""
    from transformers import AutoConfig

    name = adapter_base(name) or name
    path = Path(name)
    if (path / "config.json").is_file():
        return AutoConfig.from_pretrained(path)
    local = offline_config_dir(name)
    if local and (root / "configs" / "models" / local / "config.json").is_file():
        return AutoConfig.from_pretrained(root / "configs" / "models" / local)
    try:
        return AutoConfig.from_pretrained(name)
    except (OSError, ValueError):
        raise KotuneError(f"no config for '{name}': not a local folder, not in configs/models/, and the Hub is "
                          "not reachable") from None


@dataclass
class Counts:
    total: int
    linear_quantizable: int  # parameters in Linear layers bitsandbytes would quantize
    trainable: int
    largest_layer: int
    routed_experts: int = 0  # fused 3-D routed-expert weights (MoE): not nn.Linear, so bitsandbytes leaves them 16-bit
    active: int = 0  # parameters one token goes through: all but the routed experts the router did not pick
    experts_per_token: tuple[int, int] | None = None  # (chosen, routed) experts per MoE layer


def routed_expert_weights(model) -> list:
    """The fused routed-expert weights: 3-D parameters (experts × out × in) inside an `experts` module."""
    return [p for name, p in model.named_parameters() if p.dim() == 3 and ".experts." in f".{name}"]


def lora_parameter_count(model, model_args) -> int:
    """LoRA's trainable parameters where PEFT puts them: r × (in + out) on every targeted nn.Linear (a target string
    is a regex fullmatched over the module path, a list names leaves, as PEFT reads them), plus, for
    `lora_target_parameters`, r × experts × (in + out) on each fused expert weight it names."""
    import torch

    from kotune.models import moe

    targets = spec_for(model.config.model_type).targets(model_args.lora_target_modules)
    out_emb = model.get_output_embeddings()
    linear = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and m is not out_emb]
    r = model_args.lora_r
    trainable = 0
    for name, m in linear:
        leaf = name.rsplit(".", 1)[-1]
        if targets == "all-linear" or (re.fullmatch(targets, name) if isinstance(targets, str) else leaf in targets):
            trainable += r * (m.in_features + m.out_features)
    wanted = moe.expert_target_parameters(model, getattr(model_args, "lora_target_parameters", None)) or []
    for name, p in model.named_parameters():
        if p.dim() == 3 and any(name == w or name.endswith(f".{w}") for w in wanted):
            trainable += r * p.shape[0] * (p.shape[1] + p.shape[2])
    return trainable


def count_parameters(config, model_args) -> Counts:
    """Parameter counts from the config alone: the model is built on the meta device with the class that loads its
    checkpoint (an image-text class for EXAONE 4.5, Qwen3.5, Gemma 3/4), so no weight is read."""
    import torch

    from kotune.models.architectures import auto_class

    with torch.device("meta"):
        model = auto_class(config).from_config(config)
    total = sum(p.numel() for p in model.parameters())
    out_emb = model.get_output_embeddings()
    quantizable = sum(m.weight.numel() for m in model.modules()
                      if isinstance(m, torch.nn.Linear) and m is not out_emb)
    largest = max(p.numel() for p in model.parameters())
    fused = routed_expert_weights(model)
    routed = sum(p.numel() for p in fused)
    active, per_token = total, None
    if fused:
        chosen = config.get_text_config().num_experts_per_tok
        active = total - sum(p.numel() * (1 - chosen / p.shape[0]) for p in fused)
        per_token = (chosen, fused[0].shape[0])
    trainable = lora_parameter_count(model, model_args) if model_args.use_peft else total
    return Counts(total, quantizable, trainable, largest, routed, int(active), per_token)


PROMPT_TOKENS = 512  # GRPO's prompt length when planning (its config caps only the completion)


def sequence_length(t) -> int:
    """Tokens per sequence: max_length, or for GRPO (which has none) a 512-token prompt plus max_completion_length;
    1024 when unset."""
    if getattr(t, "max_length", None):
        return t.max_length
    if getattr(t, "max_completion_length", None):
        return PROMPT_TOKENS + t.max_completion_length
    return 1024


def fsdp_settings(training) -> dict | None:
    """{"reshard": bool, "offload": bool} of an FSDP run (from the TrainingArguments' plugin args), or None."""
    if not getattr(training, "fsdp", None):
        return None
    args = getattr(training, "fsdp_plugin_args", None) or {}
    return {"reshard": bool(args.get("reshard_after_forward", True)), "offload": bool(args.get("cpu_offload"))}


def fsdp_terms(weights, grads, optimizer, master, counts: Counts, config, weight_dtype: int, gpus: int, fsdp: dict):
    """FSDP2: every parameter, gradient and optimizer state sharded over the GPUs; a block is all-gathered while it
    runs (two in flight: the next is prefetched), and the root group (embeddings, head) for the whole step; without
    reshard_after_forward every block stays gathered from its forward to its backward. CPU offload moves the shards
    to the host; only the gathered blocks stay on the GPU."""
    text = config.get_text_config()
    root = counts.largest_layer * (1 if getattr(text, "tie_word_embeddings", False) else 2)
    block = max(0, counts.total - root) / max(1, text.num_hidden_layers)
    gathered = (root + 2 * block) * weight_dtype if fsdp["reshard"] else weights
    shards = [weights / gpus, grads / gpus, optimizer / gpus, master / gpus]
    host = 0.0
    if fsdp["offload"]:
        host, shards = sum(shards) * gpus, [0.0, 0.0, 0.0, 0.0]
    return shards[0] + gathered, shards[1], shards[2], shards[3], host


def estimate(cfg, counts: Counts, config, gpus: int, deepspeed=None, reference_copy: bool = False,
             checkpointing: bool | None = None, fsdp: dict | None = None) -> dict:
    """Bytes per GPU and on the host, term by term. `deepspeed`: the DeepSpeed config (path or dict), if any;
    `fsdp`: FSDP2's settings (`fsdp_settings`), if any; `reference_copy`: a frozen second copy of the weights (full
    DPO); `checkpointing`: instead of the config's."""
    m, t = cfg.model, cfg.training
    if checkpointing is None:
        checkpointing = t.gradient_checkpointing
    dtype_bytes = 2 if (t.bf16 or t.fp16 or m.dtype in ("bfloat16", "float16")) else 4
    weight_dtype = BYTES.get(m.dtype, 4)
    other = counts.total - counts.linear_quantizable
    if m.load_in_4bit:
        # NF4: 0.5 byte/param + absmax constants (fp32 per 64: 0.5 bit; double-quantized: ~0.127 bit)
        per_param = 0.5 + (0.127 if m.use_bnb_nested_quant else 0.5) / 8
        weights = counts.linear_quantizable * per_param + other * weight_dtype
    elif m.load_in_8bit:
        weights = counts.linear_quantizable * 1.0 + other * weight_dtype
    else:
        weights = counts.total * weight_dtype
    # bitsandbytes quantizes nn.Linear only: MoE's fused 3-D expert weights stay in the 16-bit (or fp32) dtype
    experts_16bit = counts.routed_experts * weight_dtype if (m.load_in_4bit or m.load_in_8bit) else 0
    trainable = counts.trainable
    grads = trainable * (4 if not m.use_peft else dtype_bytes)
    optimizer = trainable * 8  # AdamW: two fp32 moments
    master = trainable * 4 if (not m.use_peft and weight_dtype == 2) else 0  # fp32 master copy (mixed precision)

    ds = read_deepspeed_config(deepspeed)[0] if deepspeed else {}
    zero = ds.get("zero_optimization") or {}
    stage = zero.get("stage")
    off_opt = (zero.get("offload_optimizer") or {}).get("device") == "cpu"
    off_par = (zero.get("offload_param") or {}).get("device") == "cpu"
    host = 0.0
    if stage in (2, 3) and not m.use_peft:
        grads = trainable * dtype_bytes  # DeepSpeed keeps 16-bit gradients next to 16-bit weights
    if stage in (2, 3):
        grads /= gpus
        optimizer /= gpus
        master /= gpus
    if stage == 3:
        weights /= gpus
    if off_opt:  # optimizer state, master weights and the gradient partitions live on the host
        host += (optimizer + master + grads) * gpus
        optimizer = master = grads = 0
    if off_par and stage == 3:
        host += weights * gpus
        weights = 0
    if fsdp is not None and stage is None:
        weights, grads, optimizer, master, host = fsdp_terms(weights, grads, optimizer, master, counts, config,
                                                             weight_dtype, gpus, fsdp)

    text = config.get_text_config()  # image-text models (Gemma-3) keep the language model's sizes there
    h, layers = text.hidden_size, text.num_hidden_layers
    tokens = t.per_device_train_batch_size * sequence_length(t)
    if checkpointing:
        # the input of every layer kept (16-bit), plus one layer recomputed in full
        activations = tokens * h * 2 * layers + tokens * h * 34
    else:
        activations = tokens * h * 34 * layers  # Korthikanti et al., flash/sdpa attention (no s² term)
    logits = tokens * text.vocab_size * 4 * 2  # fp32 logits and their gradient
    if reference_copy:
        weights *= 2
    per_gpu = weights + grads + optimizer + master + activations + logits + CONTEXT_OVERHEAD
    return {"weights": weights, "gradients": grads, "optimizer": optimizer + master, "activations": activations,
            "logits": logits, "overhead": CONTEXT_OVERHEAD,
            "experts_16bit": experts_16bit / gpus if stage == 3 else experts_16bit,
            "per_gpu": per_gpu, "host": host, "zero_stage": stage, "fsdp": fsdp if stage is None else None,
            "tokens_per_step": t.per_device_train_batch_size * t.gradient_accumulation_steps * gpus
            * sequence_length(t)}
