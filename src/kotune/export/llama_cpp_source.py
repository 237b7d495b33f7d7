"""Where llama.cpp's converter comes from: the llama-cpp-python source distribution on PyPI vendors llama.cpp with
`convert_hf_to_gguf.py`, its `conversion/` package and the matching `gguf-py`. kotune extracts those once per
version into `$KOTUNE_LLAMA_CPP_CACHE` (default ~/.cache/kotune/llama.cpp/VERSION), so conversion and the
llama.cpp that loads the file (llama-cpp-python, when installed) come from the same llama.cpp release.
`$KOTUNE_LLAMA_CPP` may point at a llama.cpp checkout instead."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from importlib import metadata
from pathlib import Path

from kotune.errors import KotuneError

logger = logging.getLogger("kotune.export")

PINNED_VERSION = "0.3.36"  # the llama-cpp-python release tested with kotune (pyproject's `gguf` extra)
NEEDED = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")


def installed_version() -> str | None:
    try:
        return metadata.version("llama_cpp_python")
    except metadata.PackageNotFoundError:
        return None


def converter_dir() -> Path:
    """A folder holding llama.cpp's convert_hf_to_gguf.py, fetched from PyPI on first use."""
    if checkout := os.environ.get("KOTUNE_LLAMA_CPP"):
        path = Path(checkout).expanduser()
        if not (path / "convert_hf_to_gguf.py").is_file():
            raise KotuneError(f"KOTUNE_LLAMA_CPP='{checkout}' has no convert_hf_to_gguf.py; point it at a llama.cpp "
                              "checkout or unset it")
        return path
    version = installed_version() or PINNED_VERSION
    root = Path(os.environ.get("KOTUNE_LLAMA_CPP_CACHE", Path.home() / ".cache" / "kotune" / "llama.cpp"))
    target = root.expanduser() / version
    if not (target / "convert_hf_to_gguf.py").is_file():
        fetch(version, target)
    return target


def fetch(version: str, target: Path) -> None:
    """Download llama-cpp-python's sdist and keep only the converter's files (about 3 MB of the 76 MB)."""
    logger.info("fetching llama.cpp's converter from PyPI (llama-cpp-python==%s source distribution)", version)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
               f"llama-cpp-python=={version}", "-d", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True)
        sdists = list(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        if done.returncode != 0 or not sdists:
            raise KotuneError(f"could not download llama-cpp-python=={version} from PyPI for llama.cpp's converter "
                              f"({done.stderr.strip().splitlines()[-1] if done.stderr.strip() else 'no file'}); "
                              "set KOTUNE_LLAMA_CPP to a llama.cpp checkout to convert offline")
        staged = Path(tmp) / "llama.cpp"
        with tarfile.open(sdists[0]) as sdist:
            for member in sdist.getmembers():
                inner = member.name.partition("/vendor/llama.cpp/")[2]
                if member.isfile() and inner and any(inner == n or inner.startswith(n) for n in NEEDED):
                    member.name = inner
                    sdist.extract(member, staged, filter="data")
        if not (staged / "convert_hf_to_gguf.py").is_file():
            raise KotuneError(f"llama-cpp-python=={version}'s sdist has no vendor/llama.cpp/convert_hf_to_gguf.py")
        shutil.rmtree(target, ignore_errors=True)
        staged.rename(target)
