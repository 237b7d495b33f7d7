"""Precision and gradient checkpointing chosen from the hardware, where the user left them unset.

TRL's configs default to bf16 and gradient checkpointing everywhere. On a CPU without native bf16 (no AVX512-BF16,
no AMX) torch emulates bf16, and training runs about 8x slower than fp32 (23.7 s vs 2.9 s for the same 30 steps
here); checkpointing recomputes activations that fit anyway. So:
- bf16 where the device computes it natively (a CUDA GPU with bf16, a CPU with AVX512-BF16 or AMX), fp16 on a
  CUDA GPU without bf16, fp32 otherwise;
- gradient checkpointing off on the CPU; on a GPU, on only when the memory plan (`kotune plan`'s estimate) of this
  run does not fit in the GPU's memory without it: decided at the start of the run (`checkpointing_from_plan`).
An explicit `bf16`/`fp16`/`gradient_checkpointing` wins, with a warning when bf16 will be emulated. A oneDNN
instruction-set cap below bf16 (`ONEDNN_MAX_CPU_ISA=AVX2`) counts as no native bf16: torch then emulates it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

logger = logging.getLogger("kotune.config")

PLAN_DECIDES = "from the memory plan at the start of the run"
HEADROOM = 0.9  # of the GPU's memory: the plan is an estimate, and the allocator fragments
GiB = 1024**3


# oneDNN's instruction-set caps (ONEDNN_MAX_CPU_ISA) at which its bf16 kernels are still native
NATIVE_BF16_ISAS = ("AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX10_", "ALL", "DEFAULT")


def isa_cap() -> str | None:
    """oneDNN's instruction-set cap when the environment sets one below native bf16 (ONEDNN_MAX_CPU_ISA=AVX2 makes
    a bf16 step 13x slower than fp32 on this AVX512-BF16 CPU, as on a CPU without it), else None."""
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").strip().upper()
    return cap if cap and not cap.startswith(NATIVE_BF16_ISAS) else None


def native_cpu_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), as torch or the kernel reports it, and torch's
    kernels are not capped below it."""
    if isa_cap():
        return False
    check = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    if check is not None and check():
        return True
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    if amx is not None and amx():
        return True
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def hardware_defaults(training: dict) -> tuple[dict, dict[str, str]]:
    """(values to set because the user left them unset, the reason for each choice, by key)."""
    set_here, reasons = {}, {}
    cuda = torch.cuda.is_available() and not training.get("use_cpu")
    if "bf16" not in training and "fp16" not in training:
        if cuda:
            bf16 = torch.cuda.is_bf16_supported()
            set_here.update(bf16=bf16, fp16=not bf16)
            reasons["precision"] = "bf16: the GPU computes it natively" if bf16 else \
                "fp16 with a loss scaler: the GPU has no native bf16"
        else:
            native = native_cpu_bf16()
            set_here.update(bf16=native, fp16=False)
            cap = f" at ONEDNN_MAX_CPU_ISA={isa_cap()}" if isa_cap() else ""
            reasons["precision"] = "bf16: the CPU has AVX512-BF16/AMX" if native else \
                f"fp32: this CPU has no native bf16{cap} (torch would emulate it, ~8x slower)"
    else:
        reasons["precision"] = "as configured"
        if training.get("bf16") and not cuda and not native_cpu_bf16():
            logger.warning("bf16=true on a CPU without native bf16 (AVX512-BF16/AMX): torch emulates it, about 8x "
                           "slower than fp32 here; leave bf16 unset to train in fp32")
    if "gradient_checkpointing" not in training and "activation_checkpointing" not in training:
        if not cuda:
            set_here["gradient_checkpointing"] = False
            reasons["gradient_checkpointing"] = "off: on the CPU activations fit in host memory"
        else:
            reasons["gradient_checkpointing"] = PLAN_DECIDES  # stages.common.checkpointing_from_memory_plan
    else:
        reasons["gradient_checkpointing"] = "as configured"
    return set_here, reasons


def checkpointing_from_plan(without: float, with_: float, device_bytes: float) -> tuple[bool, str]:
    """(gradient checkpointing on?, why): on only when the plan without it exceeds HEADROOM of the GPU's memory.

    >>> checkpointing_from_plan(30 * GiB, 20 * GiB, 80 * GiB)[0], checkpointing_from_plan(75 * GiB, 40 * GiB, 80 * GiB)[0]
    (False, True)
    """
    budget = device_bytes * HEADROOM
    numbers = (f"memory plan {without / GiB:.1f} GiB per GPU without it, {with_ / GiB:.1f} GiB with it; the GPU has "
               f"{device_bytes / GiB:.1f} GiB, {100 * HEADROOM:.0f}% of it is {budget / GiB:.1f} GiB")
    if without <= budget:
        return False, f"off: the run fits without recomputing activations ({numbers})"
    if with_ <= budget:
        return True, f"on: the run does not fit without it ({numbers})"
    return True, (f"on: the run does not fit without it, and may not fit with it either ({numbers}); lower "
                  "per_device_train_batch_size or max_length, use load_in_4bit, or shard with ZeRO-3")
