"""Output folders that appear whole or not at all: built in a temporary sibling and renamed into place, so a failed
or killed export leaves no half-written folder, and an old folder is removed only once the new one is there.

What may be replaced is checked first (`check_out`): replacing a folder deletes it, so an --out that is, holds or
lies inside an input, or that holds files this command did not write, is refused before anything loads.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from kotune.errors import KotuneError


def check_out(out: Path, inputs: dict[str, Path], overwrite: bool, marker: str, command: str,
              flag: str = "--overwrite") -> None:
    """Refuse an --out that would destroy an input or a folder of someone else's files.

    `inputs`: {what it is: path} (the run, the adapters and the local base it chains to). `marker`: the info file
    `command` writes into every output; an existing, non-empty --out is replaced only with `flag` and only when it
    holds that file, i.e. an earlier run of the same command wrote it.
    """
    target = out.resolve()
    for role, path in inputs.items():
        source = Path(path).resolve()
        if target == source:
            raise KotuneError(f"--out '{out}' is the {role} itself; writing there would replace the input. Choose a "
                              "new folder beside it")
        if source in target.parents:
            raise KotuneError(f"--out '{out}' is inside the {role} '{path}'; choose a separate folder (not inside "
                              "any input)")
        if target in source.parents:
            raise KotuneError(f"--out '{out}' contains the {role} '{path}': replacing it would delete that input. "
                              "Choose a separate folder that holds no input")
    if out.exists() and not out.is_dir():
        raise KotuneError(f"--out '{out}' exists and is not a directory; choose a new folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise KotuneError(f"--out '{out}' exists and is not empty; pass {flag} to replace it")
        if not (out / marker).is_file():
            raise KotuneError(f"--out '{out}' holds files that `{command}` did not write (it has no {marker}); "
                              f"{flag} only replaces a folder an earlier `{command}` wrote. Choose a new or empty "
                              "folder, or move those files away first")


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
