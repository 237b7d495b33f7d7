"""Adapter run dirs: which base an adapter names (read from its adapter_config.json; no heavy import)."""

from __future__ import annotations

import json
from pathlib import Path

from kotune.errors import KotuneError


def adapter_base(path: str | Path) -> str | None:
    """The base model of an adapter dir, or None when `path` is not an adapter dir."""
    config = Path(path) / "adapter_config.json"
    if not config.is_file():
        return None
    base = json.loads(config.read_text()).get("base_model_name_or_path")
    if not base:
        raise KotuneError(f"'{config}' names no base_model_name_or_path; point model_name_or_path at a merged model")
    return base
