"""Tokenizing the mixture's picks in chunks, in `dataset_num_proc` forked processes, with a progress bar.

Rendering and tokenizing are per-pick work with no shared state, so they run in worker processes; the mixture
(draw, drops, report, order) stays in the caller. Each pick's result depends on that pick alone, so any number of
processes and any chunk size give the same examples. Workers are forked: they inherit the records and the
tokenizer instead of receiving them pickled (datasets' multi-process map pickled both to every worker, and two
processes were slower than one on 2 cores), and write one Arrow file per chunk that the parent maps. The garbage
collector is paused while the work runs: the millions of small id lists otherwise trigger full collections that
scan every loaded record (87 s instead of 60 s for 100K rows here).
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import logging
import multiprocessing
import os
import shutil
import sys
import tempfile
import uuid
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.ipc  # noqa: F401  (pa.ipc)
from datasets import Dataset, DatasetInfo, Features, List, Value
from datasets.table import InMemoryTable
from datasets.utils import tqdm as progress_bar

from kotune.errors import KotuneError

logger = logging.getLogger(__name__)

CHUNK = 1000  # picks per unit of work: big enough for batched tokenizing, small enough to balance the workers
MIN_PICKS_PER_PROCESS = 2000  # below this a fork costs more than it saves


def auto_num_proc(n_picks: int, requested: int | None) -> int:
    """`dataset_num_proc` when set; else one process per usable core (at most 8), fewer for small data.

    One process already tokenizes on every core (the Rust tokenizer's own threads), but renders, masks and writes
    on one; the workers do all of it in parallel (bench/RESULTS.md, packing).

    >>> auto_num_proc(500, 3), auto_num_proc(500, None)
    (3, 1)
    """
    if requested:
        return max(1, int(requested))
    if not can_fork():
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, 8, n_picks // MIN_PICKS_PER_PROCESS))


def can_fork() -> bool:
    """Forked workers only where fork is the safe, usual start method (Linux)."""
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


@contextlib.contextmanager
def paused_gc():
    """No cyclic garbage collection inside (reference counting still frees everything these loops create)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def output_features(n_variants: int) -> Features:
    """The columns one pick becomes; epoch 0's ids are int32 as `Dataset.from_dict` stores `input_ids`. A dropped
    pick has empty lists and its reason. A conversation split into one example per turn is several rows, `part`
    0, 1, ...; `note` says what happened to its reasoning (`kotune.data.encode.encode_examples`)."""
    cols = {}
    for v in range(n_variants):
        suffix = f"_{v}" if v else ""
        cols[f"input_ids{suffix}"] = List(Value("int32"))
        cols[f"labels{suffix}"] = List(Value("int64"))
    return Features({**cols, "reason": Value("string"), "truncated": Value("int8"), "part": Value("int32"),
                     "note": Value("string")})


def _list_array(rows: list, dtype) -> pa.Array:
    """A list<int> Arrow column from Python lists, through one flat numpy array (4x faster than `pa.array`)."""
    offsets = np.zeros(len(rows) + 1, np.int32)
    np.cumsum(np.fromiter(map(len, rows), np.int64, len(rows)), out=offsets[1:])
    values = np.fromiter(itertools.chain.from_iterable(rows), dtype, int(offsets[-1]))
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))


def _encode_chunk(job: tuple, start: int, end: int) -> pa.Table:
    """Picks [start, end) as one Arrow table: consecutive runs of the same source go to `encode_source` together."""
    drawn, picks, encode_source, n_variants, settings = job
    ids: list[list] = [[] for _ in range(n_variants)]
    labels: list[list] = [[] for _ in range(n_variants)]
    reasons, cuts, parts, notes = [], [], [], []
    with paused_gc():
        i = start
        while i < end:
            j = i
            while j < end and picks[j][0] == picks[i][0]:
                j += 1
            rows = drawn[picks[i][0]][0]
            records = [rows.records[index] for _, index, _ in picks[i:j]]
            keys = [key for _, _, key in picks[i:j]]
            for variants, reason, cut, note in encode_source(rows.to_messages, rows.templated, records, keys,
                                                             n_variants=n_variants, **settings):
                for part in range(len(variants[0]) if variants else 1):
                    for v in range(n_variants):
                        ids[v].append(variants[v][part][0] if variants else ())
                        labels[v].append(variants[v][part][1] if variants else ())
                    reasons.append(reason)
                    cuts.append(cut)
                    parts.append(part)
                    notes.append(note)
            i = j
        columns = {}
        for v in range(n_variants):
            suffix = f"_{v}" if v else ""
            columns[f"input_ids{suffix}"] = _list_array(ids[v], np.int32)
            columns[f"labels{suffix}"] = _list_array(labels[v], np.int64)
        columns["reason"] = pa.array(reasons, pa.string())
        columns["truncated"] = pa.array(cuts, pa.int8())
        columns["part"] = pa.array(parts, pa.int32())
        columns["note"] = pa.array(notes, pa.string())
        return pa.table(columns)


_INHERITED: dict = {}  # the job, set in the parent just before the workers fork: they read it, nothing is pickled


def _encode_inherited_chunk(bounds: tuple[int, int]) -> tuple[str, int]:
    """A worker's chunk, written as an Arrow file the parent maps (pickling tables through the pool's pipe cost
    2 s per 100K examples)."""
    table = _encode_chunk(_INHERITED["job"], *bounds)
    path = os.path.join(_INHERITED["spill"], f"{bounds[0]:012d}.arrow")
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return path, table.num_rows


def _read_spilled(path: str) -> pa.Table:
    return pa.ipc.open_file(pa.memory_map(path)).read_all()  # mapped: it stays readable once the file is removed


def encode_picks(drawn, encode_source: Callable, n_variants: int, num_proc: int, **settings) -> Dataset:
    """One row per example, in draw order: `input_ids`/`labels` (epoch 0), `input_ids_k`/`labels_k` (epoch k), the
    reason a pick was dropped (or None), whether it was truncated, its `part` (0 for a pick's first example) and
    `note`. `encode_source(render, templated, records, keys, n_variants=..., **settings)` yields (variants | None,
    reason | None, truncated, note) per pick, variants[epoch] being that pick's examples."""
    picks = [(s, p.index, p.key) for s, (_, source_picks) in enumerate(drawn) for p in source_picks]
    features = output_features(n_variants)
    if not picks:
        return Dataset.from_dict({name: [] for name in features}, features=features)
    procs = min(num_proc, len(picks)) if can_fork() else 1
    size = CHUNK if procs == 1 else max(1, min(CHUNK, -(-len(picks) // (4 * procs))))  # >= 4 chunks per worker
    chunks = [(start, min(start + size, len(picks))) for start in range(0, len(picks), size)]
    job = (drawn, picks, encode_source, n_variants, settings)
    tables = []
    with progress_bar(total=len(picks), unit=" examples", desc="tokenizing") as bar:
        if procs == 1:
            for start, end in chunks:
                tables.append(_encode_chunk(job, start, end))
                bar.update(end - start)
        else:
            _INHERITED.update(job=job, spill=tempfile.mkdtemp(prefix="kotune-tokenized-"))
            try:
                with single_threaded_tokenizers(), ProcessPoolExecutor(
                        procs, mp_context=multiprocessing.get_context("fork")) as pool:
                    for path, n_rows in pool.map(_encode_inherited_chunk, chunks):
                        tables.append(_read_spilled(path))
                        bar.update(n_rows)
            except BrokenProcessPool as err:
                raise KotuneError(f"a tokenizing process died ({err}); the usual cause is memory: set "
                                  f"dataset_num_proc to fewer than {procs} (1 tokenizes in this process)") from None
            finally:
                shutil.rmtree(_INHERITED["spill"], ignore_errors=True)
                _INHERITED.clear()
    return in_memory_dataset(pa.concat_tables(tables).cast(features.arrow_schema), features)


def in_memory_dataset(table: pa.Table, features: Features) -> Dataset:
    """A Dataset over an Arrow table as it is. Its fingerprint is random: datasets would otherwise hash every
    token to make one (2 s per 100K rows), and kotune's own cache is keyed on the inputs, not on this."""
    return Dataset(InMemoryTable(table), info=DatasetInfo(features=features), fingerprint=uuid.uuid4().hex)


@contextlib.contextmanager
def single_threaded_tokenizers():
    """Forked workers tokenize on one thread each: a Rust thread pool used before the fork does not survive it
    (the tokenizers library warns, or with TOKENIZERS_PARALLELISM=true can hang), and the processes fill the cores.
    The parent's objects are frozen out of the garbage collector meanwhile, so the workers never scan (and copy)
    them."""
    before = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
        if before is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = before
