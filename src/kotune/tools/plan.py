"""`kotune plan CONFIG [--gpus N] [--gpu-mem 80GiB]`: will this run fit, before any weight is loaded?

The model is built on the meta device from its config (no weights); LoRA targets are counted on it. Memory per GPU
is the sum of: weights (by dtype and quantization), gradients and AdamW state of the trainable parameters (sharded
by ZeRO, moved to host by offload), activations (with or without gradient checkpointing) and the logits of one
micro-batch, plus a fixed allowance for the CUDA context and allocator. Each term is an estimate, printed
separately so it can be checked.
"""

from __future__ import annotations

import re
from pathlib import Path

from kotune.config.loading import read_config
from kotune.config.validation import build_config, check_config, field_groups
from kotune.errors import KotuneError
from kotune.models.memory import (GiB, Counts, count_parameters, estimate, fsdp_settings,  # noqa: F401 (the API)
                                  model_config)
from kotune.stages.registry import STAGES, get_stage
from kotune.vocab.stages import PRESETS, stage_trainable


def parse_size(text: str) -> float:
    m = re.fullmatch(r"\s*([\d.]+)\s*(GiB|GB|G|MiB|MB|M)?\s*", text)
    if not m:
        raise KotuneError(f"--gpu-mem: '{text}' is not a size like 24GiB or 80GB")
    value, unit = float(m.group(1)), (m.group(2) or "GiB")
    return value * {"GiB": GiB, "G": GiB, "GB": 1e9, "MiB": 1024**2, "M": 1024**2, "MB": 1e6}[unit]


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


def moe_lines(counts: Counts, est: dict) -> list[str]:
    """For a Mixture-of-Experts base: active parameters per token, and the expert weights that 4/8-bit loading
    leaves in 16-bit (bitsandbytes quantizes nn.Linear only; the fused 3-D routed experts are parameters)."""
    if not counts.experts_per_token:
        return []
    chosen, routed = counts.experts_per_token
    lines = [f"MoE: {counts.active / 1e9:.2f} B active per token ({chosen} of {routed} routed experts; "
             f"routed experts hold {counts.routed_experts / 1e9:.2f} B)"]
    if est.get("experts_16bit"):
        bits = round(8 * est["experts_16bit"] / counts.routed_experts)
        lines.append(f"QLoRA keeps {est['experts_16bit'] / 1e9:.1f} GB of expert weights in {bits}-bit "
                     "(bitsandbytes quantizes nn.Linear only, not fused 3-D experts): counted in weights")
    return lines


def sharding_comparison(cfg, counts: Counts, config, gpus: int, est: dict, reference_copy: bool) -> list[str]:
    """A sharded run (ZeRO-3 or FSDP2) beside the other engine for the same run, so the choice is made on numbers."""
    if est["fsdp"]:
        other = estimate(cfg, counts, config, gpus, {"zero_optimization": {"stage": 3}}, reference_copy)
        return [f"the same run under ZeRO-3 (no offload): {other['per_gpu'] / GiB:.2f} GiB per GPU"]
    if est["zero_stage"] == 3:
        other = estimate(cfg, counts, config, gpus, None, reference_copy, fsdp={"reshard": True, "offload": False})
        return [f"the same run under FSDP2 (no offload): {other['per_gpu'] / GiB:.2f} GiB per GPU"]
    return []


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
    eeve = stage_trainable(cfg, config, counts.total, counts.trainable)  # eeve_stage: only the open rows/layers
    counts.trainable = counts.trainable if eeve is None else eeve
    reference_copy = get_stage(stage).reference_copy and not cfg.model.use_peft
    fsdp = fsdp_settings(cfg.training)
    est = estimate(cfg, counts, config, gpus, deepspeed, reference_copy=reference_copy, fsdp=fsdp)
    m = cfg.model
    method = ("QLoRA 4-bit" if m.load_in_4bit else "LoRA 8-bit" if m.load_in_8bit else "LoRA" if m.use_peft
              else "full fine-tuning")
    lines = [
        f"model: {cfg.model.model_name_or_path} ({config.model_type}), method: {method}"
        + (f", ZeRO-{est['zero_stage']}" if est["zero_stage"] else "")
        + (f", FSDP2{' + CPU offload' if fsdp['offload'] else ''}" if est["fsdp"] else "") + f", {gpus} GPU(s)",
        f"parameters: {counts.total / 1e9:.2f} B total, {counts.trainable / 1e6:.1f} M trainable "
        f"({100 * counts.trainable / counts.total:.2f}%)",
        *moe_lines(counts, est),
        *([f"eeve_stage {cfg.kotune.eeve_stage} ({PRESETS[cfg.kotune.eeve_stage].rule}): gradients and AdamW "
           f"state for {eeve:,} parameters, counted on the resized matrices"] if eeve is not None else []),
        f"tokens per optimizer step: {est['tokens_per_step']:,} (at most; batch × accumulation × GPUs × max_length)",
        "memory per GPU (estimate):",
    ]
    for key in ("weights", "gradients", "optimizer", "activations", "logits", "overhead"):
        lines.append(f"  {key:12s} {est[key] / GiB:8.2f} GiB")
    lines.append(f"  {'total':12s} {est['per_gpu'] / GiB:8.2f} GiB")
    if est["host"]:
        lines.append(f"host memory for offload: {est['host'] / GiB:.2f} GiB")
    lines += sharding_comparison(cfg, counts, config, gpus, est, reference_copy)
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
                         "use load_in_4bit, or shard with --zero 3 / 3-offload or --fsdp")
    print("\n".join(lines))
    return 0 if not gpu_mem or est["per_gpu"] <= parse_size(gpu_mem) else 1
