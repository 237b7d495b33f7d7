"""User-facing errors: one message, a non-zero exit, no traceback."""

from __future__ import annotations

import sys
from contextlib import contextmanager


class KotuneError(Exception):
    """A mistake the user can fix (config, paths, data). Printed without a traceback."""


class ConfigError(KotuneError):
    """Every problem found in a config, reported at once."""

    def __init__(self, problems: list[str], source: str = "config"):
        self.problems = list(problems)
        noun = "problem" if len(problems) == 1 else "problems"
        lines = [f"{source}: {len(problems)} {noun}:"] + [f"  - {p}" for p in problems]
        super().__init__("\n".join(lines))


EXIT_USER_ERROR = 2


@contextmanager
def user_errors_exit():
    """Turn a KotuneError into `kotune: error: ...` on stderr and exit code 2."""
    try:
        yield
    except KotuneError as err:
        print(f"kotune: error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_USER_ERROR) from None
