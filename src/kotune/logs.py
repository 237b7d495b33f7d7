"""Logging for every kotune command: kotune's INFO lines on the main process, warnings elsewhere."""

from __future__ import annotations

import logging
import os
import sys
import warnings

# Warnings that every run printed and the user can do nothing about, matched exactly (message, category, module):
# PEFT's get_peft_model and TRL's generation read transformers' deprecated `is_gradient_checkpointing`, and PEFT's
# prepare_model_for_kbit_training (QLoRA with checkpointing) calls the deprecated `gradient_checkpointing_enable`.
# Library warnings about the user's own settings stay.
LIBRARY_NOISE = ((r"`is_gradient_checkpointing` is deprecated and will be removed in v6\. Use "
                  r"`is_activation_checkpointing` instead\.", FutureWarning, r"transformers\.modeling_utils"),
                 (r"`gradient_checkpointing_enable` is deprecated and will be removed in v6\. Use "
                  r"`activation_checkpointing_enable` instead\.", FutureWarning, r"transformers\.modeling_utils"))


# Log records every run printed on a machine without a GPU, matched exactly (logger, start of the message):
# DeepSpeed (a pinned dependency that transformers imports) announces that it fell back to the CPU, and
# bitsandbytes (imported by PEFT, quantized or not) that it cannot fetch a CPU kernel from the Hub, which an
# offline run cannot reach anyway. Neither is about anything the user set.
LIBRARY_LOG_NOISE = (("DeepSpeed", "Setting accelerator to CPU. If you have GPU or other accelerator"),
                     ("bitsandbytes.backends.cpu.ops", "Failed to load CPU gemm_4bit_forward from kernels-community"))


class _DropStartingWith(logging.Filter):
    def __init__(self, start: str):
        super().__init__()
        self.start = start

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.start)


def quiet_library_noise() -> None:
    """Drop only the warnings in LIBRARY_NOISE and the log records in LIBRARY_LOG_NOISE (a logger's filters stay
    when the library configures it later)."""
    for message, category, module in LIBRARY_NOISE:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    for name, start in LIBRARY_LOG_NOISE:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropStartingWith) and f.start == start for f in logger.filters):
            logger.addFilter(_DropStartingWith(start))


def setup_logging() -> None:
    """INFO from kotune on the main process, warnings elsewhere; library loggers keep their own levels."""
    rank = int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", 0)))
    logging.basicConfig(
        format=f"%(asctime)s [rank{rank}] %(levelname)s %(name)s: %(message)s" if rank else
        "%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        level=logging.WARNING,
    )
    logging.getLogger("kotune").setLevel(logging.INFO if rank == 0 else logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    quiet_library_noise()
