"""Preprocessing cache: a rerun with the same sources, tokenizer, template, max_length and seed does no work.

Entries live in `$KOTUNE_CACHE_DIR` (default `~/.cache/kotune/data`), one folder per key, written to a temporary
folder and renamed into place, so a killed run never leaves a half-written entry behind.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path

from datasets import Dataset, load_from_disk

from kotune.data.sources import source_path
from kotune.records import file_sha256

logger = logging.getLogger(__name__)


def cache_root() -> Path:
    return Path(os.environ.get("KOTUNE_CACHE_DIR", Path.home() / ".cache" / "kotune" / "data")).expanduser()


def _code_fingerprint() -> str:
    """Changes whenever the code or the templates that shape the data change."""
    h = hashlib.sha256()
    pkg = Path(str(resources.files("kotune")))
    for path in sorted([*pkg.glob("data/*.py"), *pkg.glob("data/kit19/*.yaml")]):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _tokenizer_fingerprint(tokenizer) -> str:
    h = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    h.update(backend.to_str().encode() if backend is not None else repr(sorted(tokenizer.get_vocab().items())).encode())
    h.update(json.dumps([type(tokenizer).__name__, tokenizer.bos_token_id, tokenizer.eos_token_id,
                         tokenizer.pad_token_id, tokenizer.chat_template]).encode())
    return h.hexdigest()


def cache_key(mixture, tokenizer, settings: dict) -> str:
    sources = []
    for src in mixture.datasets:
        entry = dataclasses.asdict(src)
        path = source_path(src)
        if path is not None and path.is_dir():  # a corpus of .txt files: each file's content
            entry["content"] = {str(f.relative_to(path)): file_sha256(f) for f in sorted(path.rglob("*.txt"))}
        else:
            entry["content"] = file_sha256(path) if path is not None else f"hub:{src.id}"
        sources.append(entry)
    material = {"sources": sources, "seed": mixture.seed, "tokenizer": _tokenizer_fingerprint(tokenizer),
                "code": _code_fingerprint(), "settings": settings}
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()[:24]


def load_cached(key: str) -> tuple[list[Dataset], Dataset | None, dict] | None:
    folder = cache_root() / key
    meta = folder / "report.json"
    if not meta.is_file():
        return None
    info = json.loads(meta.read_text())
    variants = [load_from_disk(str(folder / f"variant_{i}")) for i in range(info["variants"])]
    eval_dataset = load_from_disk(str(folder / "eval")) if info.get("eval") else None
    logger.info("data: cache hit %s (%d examples, %d variants)", folder, len(variants[0]), len(variants))
    return variants, eval_dataset, info["report"]


def store(key: str, variants: list[Dataset], eval_dataset: Dataset | None, report: dict) -> None:
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    final = root / key
    if final.exists():
        return
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
    try:
        for i, ds in enumerate(variants):
            ds.save_to_disk(str(tmp / f"variant_{i}"))
        if eval_dataset is not None:
            eval_dataset.save_to_disk(str(tmp / "eval"))
        (tmp / "report.json").write_text(json.dumps({"variants": len(variants), "eval": eval_dataset is not None,
                                                     "report": report}, ensure_ascii=False))
        os.replace(tmp, final)
    except OSError as err:
        logger.warning("data cache not written (%s); the run goes on without it", err)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def cached_build(build, mixture, tokenizer, settings: dict, enabled: bool = True):
    """(variants, eval dataset or None, report, hit). `build()` runs only on a miss; its result is stored for the
    next run."""
    if not enabled:
        return (*build(), False)
    key = cache_key(mixture, tokenizer, settings)
    hit = load_cached(key)
    if hit is not None:
        return (*hit, True)
    variants, eval_dataset, report = build()
    store(key, variants, eval_dataset, report)
    return variants, eval_dataset, report, False
