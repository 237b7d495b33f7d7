"""Output folders that appear whole or not at all: built in a temporary sibling and renamed into place, so a failed
or killed export leaves no half-written folder, and an old folder is removed only once the new one is there."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from kotune.errors import KotuneError


def check_free(out: Path, overwrite: bool, flag: str = "--overwrite") -> None:
    if out.exists() and not out.is_dir():
        raise KotuneError(f"'{out}' exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise KotuneError(f"'{out}' exists and is not empty; pass {flag} to replace it")


@contextmanager
def staged_dir(out: Path):
    """Yield a temporary dir next to `out`; when the block succeeds it becomes `out`, otherwise it is deleted."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.writing-", dir=out.parent))
    mask = os.umask(0)
    os.umask(mask)
    tmp.chmod(0o777 & ~mask)  # mkdtemp makes it private; the result should look like any other dir
    try:
        yield tmp
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.old-{tmp.name.rsplit('-', 1)[-1]}")
            out.rename(old)
        tmp.rename(out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
