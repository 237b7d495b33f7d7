"""DeepSpeed config files, read once and checked at load (komt shipped invalid JSON for three months)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_deepspeed_config(ds: Any) -> tuple[dict, str | None]:
    """(the config as a dict, or {} and the problem naming the file)."""
    if isinstance(ds, dict):
        return ds, None
    path = Path(ds)
    if not path.is_file():
        return {}, f"deepspeed: config file '{ds}' does not exist"
    try:
        conf = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        return {}, f"deepspeed: '{ds}' is not valid JSON ({err})"
    if not isinstance(conf, dict):
        return {}, f"deepspeed: '{ds}' must hold a JSON object"
    return conf, None


def deepspeed_stage(ds: Any) -> int | None:
    """The ZeRO stage of a DeepSpeed config (path or dict), or None without one (or when it cannot be read)."""
    if not ds:
        return None
    conf, _ = read_deepspeed_config(ds)
    return (conf.get("zero_optimization") or {}).get("stage")
