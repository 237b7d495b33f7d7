"""The one mixture engine, for SFT and preference data alike: caps, weights or shares, seeded sampling, report,
shuffle.

A source's `weight` is the fraction of its rows to use, as alignment-handbook reads it: with no weights every row of
every source is used exactly once; 0.5 draws half of them, 2.0 every row twice. A mixture may instead give each
source a `share` of the whole (TRL's `fraction`): the largest mixture in which no source repeats a row. Any
resampling is logged per source with its factor, and a repeated KIT-19 row gets its own template.
"""

from __future__ import annotations

import json
import logging
import os
import random

from collections import Counter
from dataclasses import dataclass, replace

from kotune.config.schema import DatasetMixture
from kotune.data.sources import SourceRows, load_source, source_path
from kotune.errors import KotuneError

logger = logging.getLogger(__name__)


def weighted_counts(available: list[int], weights: list[float]) -> list[int]:
    """Rows to take from each source: its weight times its rows.

    >>> weighted_counts([100, 10], [1.0, 1.0])
    [100, 10]
    >>> weighted_counts([100, 10], [0.5, 2.0])
    [50, 20]
    """
    return [int(round(n * w)) for n, w in zip(available, weights)]


def share_counts(available: list[int], shares: list[float]) -> list[int]:
    """Rows to take from each source so that each has its share of the mixture and none repeats a row (the largest
    such mixture; TRL's `fraction`).

    >>> share_counts([100, 10], [1.0, 1.0])
    [10, 10]
    >>> share_counts([100, 10], [3.0, 1.0])
    [30, 10]
    """
    parts = [s / sum(shares) for s in shares]
    total = min(n / p for n, p in zip(available, parts) if p > 0)
    return [min(n, int(round(p * total))) for n, p in zip(available, parts)]


def sample(items: list, n: int, rng: random.Random) -> list:
    """n items: a shuffled subset, or whole repeats plus a shuffled remainder when n exceeds the supply."""
    if not items or n <= 0:
        return []
    out = []
    while n - len(out) >= len(items):
        out += rng.sample(items, len(items))
    return out + rng.sample(items, n - len(out))


def _default_cap(rows: SourceRows) -> int | None:
    if rows.source.max_samples is not None:
        return rows.source.max_samples
    if rows.templated:
        from kotune.data.kit19 import DEFAULT_CAP

        return DEFAULT_CAP
    return None


@dataclass
class Pick:
    """One drawn row of a source: its record index and a key that tells repeats apart (for KIT-19 templates)."""

    index: int
    key: str


Drawn = list[tuple[SourceRows, list[Pick]]]


def load_all(mixture: DatasetMixture, strict: bool = False) -> list[SourceRows]:
    """Every source of the mixture read and checked (what `draw` starts from; `kotune data` reads them before it
    loads a tokenizer, so a data mistake is reported in a second)."""
    return [load_source(src, strict=strict, seed=mixture.seed, formats=mixture.formats) for src in mixture.datasets]


def draw(mixture: DatasetMixture, strict: bool = False, eval_split_size: float | None = None,
         loaded: list[SourceRows] | None = None) -> tuple[random.Random, Drawn, Drawn]:
    """(the mixture's RNG, each training source's rows with the picks drawn from them, the eval rows).

    Eval rows are set aside first: every `eval: true` source, and `eval_split_size` of each training source (a share
    below 1, or a number of rows spread by size), drawn with their own RNG from the seed so no row is in both sets
    and the training draw of a run without an eval split stays as it was. Then caps, shares and sampling. The RNG
    goes on to shuffle the final examples (`shuffled`), so a seed fixes the whole mixture. `loaded`: the sources
    already read by `load_all`.
    """
    rng = random.Random(mixture.seed)
    every = loaded if loaded is not None else load_all(mixture, strict)
    loaded = [rows for rows in every if not rows.source.eval]
    _drop_overlap(every, loaded)
    held = _hold_out(every, loaded, eval_split_size, random.Random(f"{mixture.seed}:eval"))
    capped = []
    for rows in loaded:
        indices = list(range(len(rows.records)))
        cap = _default_cap(rows)
        if cap is not None and len(indices) > cap:
            rows.dropped["over max_samples"] += len(indices) - cap
            indices = rng.sample(indices, cap)
        capped.append(indices)
    sizes = [len(c) for c in capped]
    if all(rows.source.share is not None for rows in loaded):
        targets = share_counts(sizes, [rows.source.share for rows in loaded])
    else:
        targets = weighted_counts(sizes, [rows.source.weight for rows in loaded])
    drawn = []
    for rows, indices, target in zip(loaded, capped, targets):
        if target != len(indices):
            logger.info("data %s: %d rows × %.3g = %d (%s, drawn with seed %d)", rows.source.id, len(indices),
                        target / max(len(indices), 1), target, "upsampled: rows repeat" if target > len(indices)
                        else "downsampled", mixture.seed)
        seen: dict[int, int] = {}
        picks = []
        for index in sample(indices, target, rng):
            picks.append(Pick(index, f"{index}:{seen.get(index, 0)}"))  # repeats get their own key (and template)
            seen[index] = seen.get(index, 0) + 1
        rows.requested = target
        drawn.append((rows, picks))
    return rng, drawn, held


def _same_data(a, b) -> bool:
    """Whether two sources read the same rows: one file (however spelled), or one Hub id, subset and split."""
    pa, pb = source_path(a), source_path(b)
    if pa is not None or pb is not None:
        return pa is not None and pb is not None and os.path.samefile(pa, pb)
    return (a.id, a.config, a.split or "train") == (b.id, b.config, b.split or "train")


def _drop_overlap(every: list[SourceRows], train: list[SourceRows]) -> None:
    """An eval source that is a training source is an error; eval rows that are also training rows are dropped
    from the eval set, counted and logged (an eval loss on trained rows measures memory, not learning)."""
    evals = [rows for rows in every if rows.source.eval]
    if not evals:
        return
    for held in evals:
        for rows in train:
            if _same_data(held.source, rows.source):
                raise KotuneError(f"dataset '{held.source.id}' is an eval source (eval: true) and also a training "
                                  f"source ('{rows.source.id}'): the eval loss would be measured on rows the model "
                                  "trains on. Point the eval source at a separate validation file, or remove it and "
                                  "set eval_split_size to hold out a share of the training rows")
    seen = {_key(record) for rows in train for record in rows.records}
    for held in evals:
        kept = [record for record in held.records if _key(record) not in seen]
        overlap = len(held.records) - len(kept)
        if overlap:
            logger.warning("eval source %s: %d eval rows are also in the training data; they are left out of the "
                           "eval set", held.source.id, overlap)
            held.dropped["also in the training data"] += overlap
            held.records = kept


def _key(record) -> str:
    return json.dumps(record, sort_keys=True, ensure_ascii=False, default=str)


def _hold_out(every: list[SourceRows], train: list[SourceRows], size: float | None, rng: random.Random) -> Drawn:
    """The eval rows, removed from the training sources' records (see `draw`); a clear error for an empty split."""
    held: Drawn = []
    for rows in every:
        if rows.source.eval:
            indices = list(range(len(rows.records)))
            cap = _default_cap(rows)
            indices = sorted(rng.sample(indices, cap)) if cap is not None and len(indices) > cap else indices
            if not indices:
                raise KotuneError(f"eval source '{rows.source.id}' has no usable rows: {dict(rows.dropped) or 'empty'}")
            rows.requested = len(indices)
            held.append((rows, [Pick(i, f"{i}:0") for i in indices]))
    if size is None:
        return held
    total = sum(len(rows.records) for rows in train)
    for rows in train:
        n = len(rows.records)
        k = round(size * n) if size < 1 else round(size * n / max(total, 1))
        if k >= n and n:
            raise KotuneError(f"eval_split_size {size} takes all {n} rows of '{rows.source.id}', leaving none to "
                              "train on: lower it")
        out = set(rng.sample(range(n), k))
        view = replace(rows, records=[r for i, r in enumerate(rows.records) if i in out], dropped=Counter(),
                       available=k, requested=k)
        rows.records = [r for i, r in enumerate(rows.records) if i not in out]
        held.append((view, [Pick(i, f"{i}:0") for i in range(k)]))
    if not sum(len(p) for _, p in held):
        raise KotuneError(f"eval_split_size {size} leaves no eval rows ({total} usable training rows): raise it")
    return held


def drop(rows: SourceRows, index: int, reason: str, strict: bool, fix: str = "fix the row") -> None:
    """Count a row dropped for `reason`, or raise naming the source and row under `strict: true`."""
    if strict:
        raise KotuneError(f"dataset '{rows.source.id}', row {index + 1}: {reason} (strict: true; {fix}, or set "
                          "strict: false to skip such rows)")
    rows.dropped[reason] += 1


def source_report(rows: SourceRows, used: int, **extra) -> dict:
    """What one source gave: rows available, requested by its weight, used, and dropped by reason."""
    logger.info("data %s (%s): available %d, used %d, dropped %s", rows.source.id, rows.source.format,
                rows.available, used, dict(rows.dropped) or "none")
    return {"format": rows.source.format, "weight": rows.source.weight,
            **({"share": rows.source.share} if rows.source.share is not None else {}), "requested": rows.requested,
            "available": rows.available, "used": used, **extra, "nfc_normalized": rows.normalized,
            "dropped": dict(rows.dropped)}


def shuffled(n_examples: int, report: dict, rng: random.Random, what: str = "dataset") -> list[int]:
    """The training order of the examples; the one error for a mixture left empty by filtering."""
    if not n_examples:
        raise KotuneError(f"the {what} is empty after filtering: " + "; ".join(
            f"{k}: {v['available']} rows, dropped {v['dropped'] or 'none'}" for k, v in report.items()))
    order = list(range(n_examples))
    rng.shuffle(order)
    return order
