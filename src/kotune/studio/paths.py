"""The studio's one rule for files: it reads and writes only under the folder it was started in.

Every path that comes from the page goes through `Workspace.resolve`: `../`, absolute paths outside the folder and
symlinks that lead out of it are refused (resolved first, then checked), so a page can never reach `~/.ssh`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from kotune.errors import KotuneError

STATE_DIR = ".kotune-studio"  # run records, logs and the studio's own files, inside the workspace


class PathRefused(KotuneError):
    """A path from the page that leads outside the workspace."""


class Workspace:
    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()

    def resolve(self, path: str | Path) -> Path:
        """The absolute path for `path` (relative to the workspace, or absolute inside it); refused if it, or any
        symlink on the way, leads outside."""
        text = str(path).strip()
        if not text or "\x00" in text:
            raise PathRefused(f"'{path}': give a path inside {self.root}")
        candidate = Path(text).expanduser()
        full = (candidate if candidate.is_absolute() else self.root / candidate).resolve()
        if not full.is_relative_to(self.root):
            raise PathRefused(f"'{path}' is outside the studio's folder {self.root}: the studio reads and writes only "
                              "under the folder it was started in")
        return full

    def relative(self, path: str | Path) -> str:
        """`path` as the page shows it: relative to the workspace."""
        full = self.resolve(path)
        return "." if full == self.root else full.relative_to(self.root).as_posix()

    def files(self, max_depth: int = 4) -> Iterator[Path]:
        """Files under the workspace, at most `max_depth` folders down, skipping hidden folders (.venv, .git, the
        studio's own) and checkpoints: what the page lists, fast even when started at a checkout's root."""
        for folder, dirs, names in os.walk(self.root):
            depth = len(Path(folder).relative_to(self.root).parts)
            dirs[:] = [] if depth >= max_depth else sorted(
                d for d in dirs if not d.startswith((".", "__")) and not d.startswith("checkpoint-")
                and d != "node_modules")
            for name in sorted(names):
                yield Path(folder) / name

    def state_dir(self, *parts: str) -> Path:
        folder = self.root.joinpath(STATE_DIR, *parts)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def config_path_problems(self, raw: dict) -> list[str]:
        """Local paths a config names (base, data files, output_dir) that lead outside the workspace: the studio
        would read or write there on the page's behalf. Hub ids (`org/name`) are not paths."""
        from kotune.config.path_checks import LOCAL_SUFFIXES, is_local_path

        named = [("model_name_or_path", raw.get("model_name_or_path")), ("output_dir", raw.get("output_dir"))]
        mixture = raw.get("dataset_mixture")
        sources = mixture.get("datasets") if isinstance(mixture, dict) else None
        for i, src in enumerate(sources if isinstance(sources, list) else []):
            if isinstance(src, dict):
                named.append((f"dataset_mixture.datasets[{i}].id", src.get("id")))
        problems = []
        for key, value in named:
            if not isinstance(value, str) or not value:
                continue
            if key != "output_dir" and not is_local_path(value) and Path(value).suffix.lower() not in LOCAL_SUFFIXES:
                continue  # a Hub id, as `path_checks` tells them apart
            try:
                self.resolve(value)
            except PathRefused as err:
                problems.append(f"{key}: {err}")
        return problems
