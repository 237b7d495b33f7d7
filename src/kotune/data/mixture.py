"""The one mixture engine, for SFT and preference data alike: caps, shares, seeded sampling, report, shuffle.

A source's `weight` is its share of the final mixture: with weights 3 and 1, three quarters of the rows come from
the first source. The mixture keeps the total of the capped sources; a source with too few rows is upsampled
(rows repeat, and a repeated KIT-19 row gets its own template), one with more is downsampled, both with the seed.
"""

from __future__ import annotations

import logging
import random

from dataclasses import dataclass

from kotune.config.schema import DatasetMixture
from kotune.data.sources import SourceRows, load_source
from kotune.errors import KotuneError

logger = logging.getLogger(__name__)


def share_counts(available: list[int], weights: list[float]) -> list[int]:
    """Rows to take from each source so that each gets its weight's share of the total.

    >>> share_counts([100, 10], [1.0, 1.0])
    [55, 55]
    """
    total = sum(available)
    wsum = sum(weights)
    counts = [int(round(total * w / wsum)) for w in weights]
    return [c if a else 0 for c, a in zip(counts, available)]


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


def draw(mixture: DatasetMixture, strict: bool = False) -> tuple[random.Random, list[tuple[SourceRows, list[Pick]]]]:
    """(the mixture's RNG, each source's rows with the picks drawn from them): caps, then shares, then sampling.

    The RNG goes on to shuffle the final examples (`shuffled`), so a seed fixes the whole mixture.
    """
    rng = random.Random(mixture.seed)
    loaded = [load_source(src, strict=strict, seed=mixture.seed) for src in mixture.datasets]
    capped = []
    for rows in loaded:
        indices = list(range(len(rows.records)))
        cap = _default_cap(rows)
        if cap is not None and len(indices) > cap:
            rows.dropped["over max_samples"] += len(indices) - cap
            indices = rng.sample(indices, cap)
        capped.append(indices)
    if len(capped) > 1:
        targets = share_counts([len(c) for c in capped], [r.source.weight for r in loaded])
    else:
        targets = [len(capped[0])]
    drawn = []
    for rows, indices, target in zip(loaded, capped, targets):
        seen: dict[int, int] = {}
        picks = []
        for index in sample(indices, target, rng):
            picks.append(Pick(index, f"{index}:{seen.get(index, 0)}"))  # repeats get their own key (and template)
            seen[index] = seen.get(index, 0) + 1
        rows.requested = target
        drawn.append((rows, picks))
    return rng, drawn


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
    return {"format": rows.source.format, "weight": rows.source.weight, "requested": rows.requested,
            "available": rows.available, "used": used, **extra, "dropped": dict(rows.dropped)}


def shuffled(n_examples: int, report: dict, rng: random.Random, what: str = "dataset") -> list[int]:
    """The training order of the examples; the one error for a mixture left empty by filtering."""
    if not n_examples:
        raise KotuneError(f"the {what} is empty after filtering: " + "; ".join(
            f"{k}: {v['available']} rows, dropped {v['dropped'] or 'none'}" for k, v in report.items()))
    order = list(range(n_examples))
    rng.shuffle(order)
    return order
