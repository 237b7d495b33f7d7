"""`kotune plan CONFIG [--gpus N] [--gpu-mem 80GiB]`: will this run fit, before any weight is loaded?

The model is built on the meta device from its config (no weights); LoRA targets are counted on it. Memory per GPU
is the sum of: weights (by dtype and quantization), gradients and AdamW state of the trainable parameters (sharded
by ZeRO, moved to host by offload), activations (with or without gradient checkpointing) and the logits of one
micro-batch, plus a fixed allowance for the CUDA context and allocator. Each term is an estimate, printed
separately so it can be checked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from kotune.config.deepspeed_file import read_deepspeed_config
from kotune.config.loading import read_config
from kotune.config.validation import build_config, check_config, field_groups
from kotune.errors import KotuneError
from kotune.models.architectures import offline_config_dir, spec_for
from kotune.models.adapter_dirs import adapter_base
from kotune.stages.registry import STAGES, get_stage

GiB = 1024**3
BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "auto": 2, None: 4}
CONTEXT_OVERHEAD = 0.9 * GiB  # CUDA context, cuBLAS workspace, allocator fragmentation


def parse_size(text: str) -> float:
    m = re.fullmatch(r"\s*([\d.]+)\s*(GiB|GB|G|MiB|MB|M)?\s*", text)
    if not m:
        raise KotuneError(f"--gpu-mem: '{text}' is not a size like 24GiB or 80GB")
    value, unit = float(m.group(1)), (m.group(2) or "GiB")
    return value * {"GiB": GiB, "G": GiB, "GB": 1e9, "MiB": 1024**2, "M": 1024**2, "MB": 1e6}[unit]


def model_config(name: str, root: Path):
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


def count_parameters(config, model_args) -> Counts:
    import torch
    from transformers import AutoModelForCausalLM


    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    total = sum(p.numel() for p in model.parameters())
    out_emb = model.get_output_embeddings()
    linear = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and m is not out_emb]
    quantizable = sum(m.weight.numel() for _, m in linear)
    largest = max(p.numel() for p in model.parameters())
    if not model_args.use_peft:
        return Counts(total, quantizable, total, largest)
    targets = spec_for(config.model_type).targets(model_args.lora_target_modules)
    r = model_args.lora_r
    trainable = 0
    for name, m in linear:
        leaf = name.rsplit(".", 1)[-1]
        if targets == "all-linear" or (re.fullmatch(targets, name) if isinstance(targets, str) else leaf in targets):
            trainable += r * (m.in_features + m.out_features)
    return Counts(total, quantizable, trainable, largest)


PROMPT_TOKENS = 512  # GRPO's prompt length when planning (its config caps only the completion)


def estimate(cfg, counts: Counts, config, gpus: int, deepspeed=None) -> dict:
    """Bytes per GPU and on the host, term by term. `deepspeed`: the DeepSpeed config (path or dict), if any."""
    m, t = cfg.model, cfg.training
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

    text = config.get_text_config()  # image-text models (Gemma-3) keep the language model's sizes there
    h, layers = text.hidden_size, text.num_hidden_layers
    tokens = t.per_device_train_batch_size * sequence_length(t)
    if t.gradient_checkpointing:
        # the input of every layer kept (16-bit), plus one layer recomputed in full
        activations = tokens * h * 2 * layers + tokens * h * 34
    else:
        activations = tokens * h * 34 * layers  # Korthikanti et al., flash/sdpa attention (no s² term)
    logits = tokens * text.vocab_size * 4 * 2  # fp32 logits and their gradient
    per_gpu = weights + grads + optimizer + master + activations + logits + CONTEXT_OVERHEAD
    return {"weights": weights, "gradients": grads, "optimizer": optimizer + master, "activations": activations,
            "logits": logits, "overhead": CONTEXT_OVERHEAD, "per_gpu": per_gpu, "host": host, "zero_stage": stage,
            "tokens_per_step": t.per_device_train_batch_size * t.gradient_accumulation_steps * gpus
            * sequence_length(t)}


def sequence_length(t) -> int:
    """Tokens per sequence: max_length, or for GRPO (which has none) a 512-token prompt plus max_completion_length;
    1024 when unset."""
    if getattr(t, "max_length", None):
        return t.max_length
    if getattr(t, "max_completion_length", None):
        return PROMPT_TOKENS + t.max_completion_length
    return 1024


def deepspeed_cross_check(counts: Counts, gpus: int, stage: int | None) -> str | None:
    """DeepSpeed's own estimate of model states for full fine-tuning (it assumes fp16 params + Adam)."""
    if stage not in (2, 3):
        return None
    import contextlib
    import io

    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            if stage == 3:
                from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs_all_cold

                estimate_zero3_model_states_mem_needs_all_cold(counts.total, counts.largest_layer, gpus, 1)
            else:
                from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs_all_cold

                estimate_zero2_model_states_mem_needs_all_cold(counts.total, gpus, 1)
    except Exception as err:  # the estimator is informative only
        return f"(DeepSpeed estimator unavailable: {type(err).__name__})"
    return buf.getvalue().strip()


USAGE = ("usage: kotune plan CONFIG.yaml [--gpus N] [--gpu-mem 80GiB] [--stage NAME] [--key=value ...]\n\n"
         "Estimates parameters, tokens per step and memory per GPU from the model config alone (no weights) and says "
         "whether the run fits. Exit code 1 when it does not. --stage (sft, dpo, ...) defaults to the first stage "
         "that accepts every key of the config.")


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    opts = {"--gpus": "1", "--gpu-mem": None, "--stage": None}
    for flag in opts:
        if flag in argv:
            i = argv.index(flag)
            opts[flag], argv = argv[i + 1], argv[:i] + argv[i + 2:]
    return run_plan(argv, gpus=int(opts["--gpus"]), gpu_mem=opts["--gpu-mem"], stage=opts["--stage"])


def infer_stage(raw: dict) -> str:
    """The registered stage this config fits best: fewest problems, then the most keys only that stage reads
    (`beta` or `max_prompt_length` mean DPO)."""
    groups = {name: set().union(*field_groups(name).values()) | set(get_stage(name).kotune_keys) for name in STAGES}

    def own_keys(name: str) -> int:
        others = set().union(*(g for n, g in groups.items() if n != name)) - set(get_stage(name).kotune_keys)
        return sum(1 for key in raw if key in groups[name] and key not in others)

    return min(STAGES, key=lambda name: (len(check_config(raw, name, check_paths=False)[-1]), -own_keys(name)))


def run_plan(argv: list[str], gpus: int = 1, gpu_mem: str | None = None, stage: str | None = None) -> int:
    root = Path(__file__).resolve().parents[3]
    if not argv:
        raise KotuneError(USAGE.splitlines()[0])
    path, raw = read_config(argv)
    if stage is not None and stage not in STAGES:
        raise KotuneError(f"--stage: '{stage}' is not one of {', '.join(STAGES)}")
    stage = stage or infer_stage(raw)
    cfg = build_config(raw, stage=stage, source=path, check_paths=False)
    deepspeed = cfg.training_values.get("deepspeed")
    config = model_config(cfg.model.model_name_or_path, root)
    counts = count_parameters(config, cfg.model)
    est = estimate(cfg, counts, config, gpus, deepspeed)
    reference_copy = get_stage(stage).reference_copy and not cfg.model.use_peft
    if reference_copy:
        est["weights"] *= 2  # a frozen reference copy
        est["per_gpu"] += est["weights"] / 2
    m = cfg.model
    method = ("QLoRA 4-bit" if m.load_in_4bit else "LoRA 8-bit" if m.load_in_8bit else "LoRA" if m.use_peft
              else "full fine-tuning")
    lines = [
        f"model: {cfg.model.model_name_or_path} ({config.model_type}), method: {method}"
        + (f", ZeRO-{est['zero_stage']}" if est["zero_stage"] else "") + f", {gpus} GPU(s)",
        f"parameters: {counts.total / 1e9:.2f} B total, {counts.trainable / 1e6:.1f} M trainable "
        f"({100 * counts.trainable / counts.total:.2f}%)",
        f"tokens per optimizer step: {est['tokens_per_step']:,} (at most; batch × accumulation × GPUs × max_length)",
        "memory per GPU (estimate):",
    ]
    for key in ("weights", "gradients", "optimizer", "activations", "logits", "overhead"):
        lines.append(f"  {key:12s} {est[key] / GiB:8.2f} GiB")
    lines.append(f"  {'total':12s} {est['per_gpu'] / GiB:8.2f} GiB")
    if est["host"]:
        lines.append(f"host memory for offload: {est['host'] / GiB:.2f} GiB")
    if reference_copy:
        lines.append(f"{stage.upper()} with use_peft: false keeps a frozen reference copy: weights counted twice")
    elif get_stage(stage).reference_copy:
        lines.append(f"{stage.upper()} with LoRA: the reference is the adapter-disabled model, no second copy")
    elif not get_stage(stage).reads_format("instruction"):
        lines.append(f"{stage.upper()} is reference-free here: one copy of the weights")
    check = deepspeed_cross_check(counts, gpus, est["zero_stage"]) if not m.use_peft else None
    if check:
        lines += ["DeepSpeed's estimate of model states (full fine-tuning, fp16 params + Adam):", check]
    if gpu_mem:
        budget = parse_size(gpu_mem)
        verdict = "fits" if est["per_gpu"] <= budget else "does NOT fit"
        lines.append(f"verdict: {verdict} in {budget / GiB:.1f} GiB per GPU "
                     f"({100 * est['per_gpu'] / budget:.0f}% of it)")
        if est["per_gpu"] > budget:
            lines.append("  to fit: enable gradient_checkpointing, lower per_device_train_batch_size or max_length, "
                         "use load_in_4bit, or shard with --zero 3 / 3-offload")
    print("\n".join(lines))
    return 0 if not gpu_mem or est["per_gpu"] <= parse_size(gpu_mem) else 1
