"""Checks of the paths a config names, run with the config before anything loads: an output_dir that cannot be
written, data files that are not there (an NFC name typed for an NFD name on disk is found), and a
resume_from_checkpoint dir that is not whole. Found here, they cost a second; found after the model loads, minutes
and a half-written output_dir."""

from __future__ import annotations

import os
from pathlib import Path

from kotune.data.text_files import find_local

LOCAL_SUFFIXES = (".json", ".jsonl", ".csv", ".tsv", ".parquet", ".txt")


def is_local_path(name: str) -> bool:
    """A Hub id is `name` or `org/name`; anything else (./x, /x, a/b/c) must be on disk."""
    return name.startswith((".", "/", "~")) or name.count("/") >= 2 or Path(name).exists()


def path_problems(user: dict, train: dict) -> list[str]:
    """Every path problem of a raw config, one message each."""
    problems = output_dir_problems(train["output_dir"]) if train.get("output_dir") else []
    mixture = user.get("dataset_mixture")
    if isinstance(mixture, dict) and isinstance(mixture.get("datasets"), list):
        for i, src in enumerate(mixture["datasets"]):
            sid = src.get("id") if isinstance(src, dict) else None
            looks_local = isinstance(sid, str) and (Path(sid).suffix.lower() in LOCAL_SUFFIXES or is_local_path(sid))
            if looks_local and find_local(sid) is None and not Path(sid).expanduser().is_dir():
                problems.append(f"dataset_mixture.datasets[{i}].id: file '{sid}' not found")
    resume = train.get("resume_from_checkpoint")
    if isinstance(resume, str) and resume not in ("true", "True"):
        from kotune.stages.checkpoints import explicit_checkpoint_problem

        problems += [p for p in [explicit_checkpoint_problem(resume)] if p]
    return problems


def output_dir_problems(output_dir: str) -> list[str]:
    """An output_dir that cannot be created or written, found before anything loads (not after the model has)."""
    path = Path(output_dir).expanduser().absolute()
    if path.exists() and not path.is_dir():
        return [f"output_dir: '{output_dir}' is a file; choose a folder"]
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return [f"output_dir: '{output_dir}' cannot be created: '{existing}' is a file, not a folder; choose another "
                "output_dir"]
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "is not writable" if existing == path else f"cannot be created: '{existing}' is not writable"
        return [f"output_dir: '{output_dir}' {where}; choose a folder you can write, or fix its permissions"]
    return []
