"""Logging for every kotune command: kotune's INFO lines on the main process, warnings elsewhere."""

from __future__ import annotations

import logging
import os
import sys


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
