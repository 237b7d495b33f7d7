"""The fields of TRL's and transformers' config classes, stored as JSON so a config is checked without them.

Importing torch, transformers and TRL takes 8-13 s on a small machine; a misspelled key should not. The file
`library_fields.json` holds, for the pinned versions, every init field of TRL's ModelConfig (as kotune sets its
defaults) and of each registered stage's training config: its type (see `kotune.config.types`), help and choices.
A test rebuilds it from the live classes and fails when the two differ; rebuild it after a version bump or a new
stage with:

    python -m kotune.config --write-library-fields
"""

from __future__ import annotations

import importlib
import json
from functools import lru_cache
from pathlib import Path

from kotune.config.types import dataclass_fields
from kotune.stages.registry import STAGES

SCHEMA_FILE = Path(__file__).with_name("library_fields.json")
MODEL_CONFIG = "kotune.config.library:KotuneModelConfig"
PACKAGES = ("transformers", "trl", "peft")


@lru_cache(maxsize=None)
def stored() -> dict:
    """{"versions": {...}, "classes": {"module:Class": {field: {type, help, choices}}}}."""
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


def fields_of(class_path: str) -> dict[str, dict]:
    """The stored fields of one class, e.g. fields_of("trl:SFTConfig")."""
    classes = stored()["classes"]
    if class_path not in classes:
        raise KeyError(f"{class_path} is not in {SCHEMA_FILE.name}; run python -m kotune.config "
                       "--write-library-fields")
    return classes[class_path]


def load_class(class_path: str):
    module, _, name = class_path.partition(":")
    return getattr(importlib.import_module(module), name)


def live() -> dict:
    """The schema as the installed libraries define it (imports them: seconds)."""
    from importlib import metadata

    paths = [MODEL_CONFIG] + sorted({s.training_config for s in STAGES.values()})
    return {"versions": {p: metadata.version(p) for p in PACKAGES},
            "classes": {path: dataclass_fields(load_class(path)) for path in paths}}


def write() -> Path:
    SCHEMA_FILE.write_text(json.dumps(live(), indent=1, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    return SCHEMA_FILE

