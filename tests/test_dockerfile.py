"""The Dockerfile, checked without a Docker engine: lint, files it copies, and pins equal to the project's."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO

DOCKERFILE = (REPO / "Dockerfile").read_text()
PINS = dict(line.split("==") for line in (REPO / "constraints.txt").read_text().splitlines() if "==" in line)


def test_hadolint_passes():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    proc = subprocess.run([hadolint, str(REPO / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_copied_path_exists():
    sources = [src for line in DOCKERFILE.splitlines() if line.startswith("COPY")
               for src in line.split()[1:-1]]
    assert sources
    for src in sources:
        assert (REPO / src.rstrip("/")).exists(), src


def test_pins_match_the_project():
    base = re.search(r"ARG BASE_IMAGE=pytorch/pytorch:([\d.]+)-cuda", DOCKERFILE).group(1)
    assert base == PINS["torch"], "the image's torch must be the pinned torch"
    for name, version in re.findall(r"([a-z][a-z0-9_-]+)==([\w.]+)", DOCKERFILE):
        assert PINS.get(name) == version, (name, version)
    assert "-c constraints.txt" in DOCKERFILE and 'ENTRYPOINT ["/opt/kotune/launch.sh"]' in DOCKERFILE
