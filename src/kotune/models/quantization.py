"""bitsandbytes on the CPU: keep 4-bit layers on the autograd-safe kernel. (The BitsAndBytesConfig itself is TRL's,
built in `kotune.config.library.quantization_config` so that a bad setting is refused with the config.)"""

from __future__ import annotations


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
