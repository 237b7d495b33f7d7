"""Mix sources by weight, tokenize with answer-only labels, and report what was used and dropped.

A source's `weight` is its share of the final mixture: with weights 3 and 1, three quarters of the rows come from
the first source. The mixture keeps the total of the capped sources; a source with too few rows is upsampled
(rows repeat, and a repeated KIT-19 row gets its own template), one with more is downsampled, both with the seed.

KIT-19 sources are rendered once per epoch ("variants"), so each epoch draws new templates.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from typing import Callable

from datasets import Dataset

from kotune.config import DatasetMixture
from kotune.data.sources import SourceRows, load_source
from kotune.errors import KotuneError
from kotune.prompts import encode_conversations

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


def _render(rows: SourceRows, record, key: str, epoch: int):
    try:
        return rows.to_messages(record, key, epoch), None
    except Exception as err:  # a template that cannot render this row
        return None, f"template error ({type(err).__name__})"


def _encode_source(rows: SourceRows, picks: list[tuple[int, str]], tokenizer, max_length: int | None,
                   overlong: str, n_variants: int, tries: int = 8):
    """Per pick: ([(ids, labels)] * variants, reason, truncated). Batched: one tokenizer call per attempt.

    A KIT-19 example whose drawn template makes it longer than max_length tries other templates before it is
    dropped; an instruction or chat row has one form only.
    """
    n_epochs = n_variants if rows.templated else 1
    attempts = tries if rows.templated else 1
    results: list[list] = [[None] * n_epochs for _ in picks]
    reasons: list[str | None] = [None] * len(picks)
    truncated = [0] * len(picks)
    for epoch in range(n_epochs):
        pending = [i for i in range(len(picks)) if reasons[i] is None]
        for attempt in range(attempts):
            if not pending:
                break
            batch, owners = [], []
            for i in pending:
                index, key = picks[i]
                messages, reason = _render(rows, rows.records[index], key, epoch + attempt * n_variants)
                if reason:
                    reasons[i] = reason
                    continue
                batch.append(messages)
                owners.append(i)
            still_long = []
            for i, (ids, labels) in zip(owners, encode_conversations(tokenizer, batch)):
                if max_length is None or len(ids) <= max_length:
                    results[i][epoch] = (ids, labels)
                elif overlong == "truncate":
                    results[i][epoch] = (ids[:max_length], labels[:max_length])
                    truncated[i] = 1
                else:
                    still_long.append(i)
            pending = still_long
        for i in pending:
            reasons[i] = "longer than max_length"
        for i in range(len(picks)):
            if reasons[i] is None and all(x == -100 for x in results[i][epoch][1]):
                reasons[i] = "no answer tokens left after truncation"
    out = []
    for i in range(len(picks)):
        if reasons[i]:
            out.append((None, reasons[i], 0))
        else:
            variants = results[i] if rows.templated else results[i] * n_variants
            out.append((variants, None, truncated[i]))
    return out


def build_sft_variants(mixture: DatasetMixture, tokenizer, max_length: int | None, overlong: str = "drop",
                       strict: bool = False, variants_for: Callable[[int], int] = lambda n: 1,
                       ) -> tuple[list[Dataset], dict]:
    """(one tokenized dataset per epoch variant, report per source). All variants hold the same examples in the
    same order; only KIT-19 phrasings differ between them."""
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
    n_variants = max(1, int(variants_for(sum(targets)))) if any(r.templated for r in loaded) else 1

    examples: list[list[tuple[list[int], list[int]]]] = []
    report = {}
    for rows, indices, target in zip(loaded, capped, targets):
        seen: Counter = Counter()
        used = truncated = 0
        picks = []
        for index in sample(indices, target, rng):
            picks.append((index, f"{index}:{seen[index]}"))  # repeats of a row get their own key (and template)
            seen[index] += 1
        for (index, _), (variants, reason, cut) in zip(picks, _encode_source(rows, picks, tokenizer, max_length,
                                                                             overlong, n_variants)):
            if reason:
                if strict:
                    raise KotuneError(f"dataset '{rows.source.id}', row {index + 1}: {reason} (strict: true; "
                                      "fix the row, raise max_length, or set strict: false to skip such rows)")
                rows.dropped[reason] += 1
                continue
            examples.append(variants)
            used += 1
            truncated += cut
        report[rows.source.id] = {
            "format": rows.source.format,
            "weight": rows.source.weight,
            "requested": target,
            "available": rows.available,
            "used": used,
            "truncated": truncated,
            "dropped": dict(rows.dropped),
        }
        logger.info("data %s (%s): available %d, used %d, dropped %s", rows.source.id, rows.source.format,
                    rows.available, used, dict(rows.dropped) or "none")
    if not examples:
        raise KotuneError("the dataset is empty after filtering: " + "; ".join(
            f"{k}: {v['available']} rows, dropped {v['dropped'] or 'none'}" for k, v in report.items()))
    order = list(range(len(examples)))
    rng.shuffle(order)
    datasets = [
        Dataset.from_dict({"input_ids": [examples[i][v][0] for i in order],
                           "labels": [examples[i][v][1] for i in order]})
        for v in range(n_variants)
    ]
    if n_variants > 1:
        logger.info("KIT-19 templates: %d epoch variants, a new template draw per example per epoch", n_variants)
    return datasets, report


def build_sft_dataset(mixture: DatasetMixture, tokenizer, max_length: int | None, overlong: str = "drop",
                      strict: bool = False) -> tuple[Dataset, dict]:
    """The first-epoch dataset and the report (see build_sft_variants)."""
    datasets, report = build_sft_variants(mixture, tokenizer, max_length, overlong, strict)
    return datasets[0], report
