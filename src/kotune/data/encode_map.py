"""Tokenizing the mixture's picks through `datasets.map`: in `dataset_num_proc` processes, with its progress bar.

Rendering and tokenizing are per-pick work with no shared state, so they run in worker processes; the mixture
(draw, drops, report, order) stays in the caller. Each pick's result depends on that pick alone, so any number of
processes and any batch size give the same examples. The garbage collector is paused while the work runs: the
millions of small id lists otherwise trigger full collections that scan every loaded record (87 s instead of 60 s
for 100K rows here).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import pickle
import uuid
from typing import Callable

import pyarrow as pa
from datasets import Dataset, Features, List, Value
from datasets.table import InMemoryTable

logger = logging.getLogger(__name__)

def auto_num_proc(n_picks: int, requested: int | None) -> int:
    """`dataset_num_proc` when set, else one process.

    Measured here (2 cores shared with another user's test suite, 100K KIT-19 rows): 2 processes took 130 CPU-s
    and 151 s wall against 66 CPU-s and 71 s for one; the batches themselves cost the same in the workers (+15%),
    the rest goes to datasets' multi-process map around them. Until that is understood, more processes are opt-in.

    >>> auto_num_proc(100_000, None), auto_num_proc(500, 3)
    (1, 3)
    """
    return max(1, int(requested)) if requested else 1


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
    """The columns one pick becomes; epoch 0's ids are int32 as `Dataset.from_dict` stores `input_ids`."""
    cols = {}
    for v in range(n_variants):
        suffix = f"_{v}" if v else ""
        cols[f"input_ids{suffix}"] = List(Value("int32"))
        cols[f"labels{suffix}"] = List(Value("int64"))
    return Features({**cols, "reason": Value("string"), "truncated": Value("int8")})


def _encode_batch(batch: dict, jobs: list[tuple[Callable, bool]], encode_source: Callable, n_variants: int,
                  settings: dict) -> dict:
    """One map batch: consecutive runs of the same source go to `encode_source` together."""
    out: dict[str, list] = {name: [] for name in output_features(n_variants)}
    sources, keys = batch["source"], batch["key"]
    records = [pickle.loads(blob) for blob in batch["record"]]
    start = 0
    with paused_gc():
        while start < len(sources):
            end = start
            while end < len(sources) and sources[end] == sources[start]:
                end += 1
            render, templated = jobs[sources[start]]
            for variants, reason, cut in encode_source(render, templated, records[start:end], keys[start:end],
                                                       n_variants=n_variants, **settings):
                for v in range(n_variants):
                    suffix = f"_{v}" if v else ""
                    out[f"input_ids{suffix}"].append(variants[v][0] if variants else None)
                    out[f"labels{suffix}"].append(variants[v][1] if variants else None)
                out["reason"].append(reason)
                out["truncated"].append(cut)
            start = end
    return out


def encode_picks(drawn, encode_source: Callable, n_variants: int, num_proc: int, **settings) -> Dataset:
    """One row per pick, in draw order: `input_ids`/`labels` (epoch 0), `input_ids_k`/`labels_k` (epoch k), the
    reason a pick was dropped (or None) and whether it was truncated. `encode_source(render, templated, records,
    keys, n_variants=..., **settings)` yields (variants | None, reason | None, truncated) per pick."""
    jobs = [(rows.to_messages, rows.templated) for rows, _ in drawn]
    with paused_gc():  # straight to Arrow: from_dict's feature encoding of 100K pickles costs seconds
        table = Dataset(InMemoryTable(pa.table({
            "source": pa.array([s for s, (_, picks) in enumerate(drawn) for _ in picks], pa.int32()),
            "record": pa.array([pickle.dumps(rows.records[p.index], protocol=pickle.HIGHEST_PROTOCOL)
                                for rows, picks in drawn for p in picks], pa.binary()),
            "key": pa.array([p.key for _, picks in drawn for p in picks], pa.string()),
        })))
    if not len(table):  # map() on no rows never calls the function, so it would not add the columns
        return Dataset.from_dict({name: [] for name in output_features(n_variants)}, features=output_features(n_variants))
    num_proc = min(num_proc, len(table))
    fn_kwargs = {"jobs": jobs, "encode_source": encode_source, "n_variants": n_variants, "settings": settings}
    with single_threaded_tokenizers(num_proc > 1):
        return table.map(_encode_batch, batched=True, batch_size=1000, num_proc=num_proc if num_proc > 1 else None,
                         fn_kwargs=fn_kwargs, remove_columns=table.column_names, features=output_features(n_variants),
                         new_fingerprint=uuid.uuid4().hex,  # in memory, never reused: skip hashing the tokenizer
                         desc="tokenizing")


@contextlib.contextmanager
def single_threaded_tokenizers(forking: bool):
    """Forked workers tokenize on one thread each: a Rust thread pool used before the fork does not survive it
    (the tokenizers library warns, or with TOKENIZERS_PARALLELISM=true can hang), and the processes fill the cores.
    The parent's objects are frozen out of the garbage collector meanwhile."""
    if not forking:
        yield
        return
    before = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    gc.freeze()  # what exists now is never scanned in the forked workers (nor copied by their collections)
    try:
        yield
    finally:
        gc.unfreeze()
        if before is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = before
