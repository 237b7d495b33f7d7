"""Mix sources by weight, tokenize with answer-only labels, and report what was used and dropped.

A source's `weight` is its share of the final mixture: with weights 3 and 1, three quarters of the rows come from
the first source. The mixture keeps the total of the capped sources; a source with too few rows is upsampled
(rows repeat), one with more is downsampled, both with the mixture's seed.
"""

from __future__ import annotations

import logging
import random

from datasets import Dataset

from kotune.config import DatasetMixture
from kotune.data.sources import load_source
from kotune.errors import KotuneError
from kotune.prompts import encode_conversation

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


def build_sft_dataset(mixture: DatasetMixture, tokenizer, max_length: int | None, overlong: str = "drop",
                      strict: bool = False) -> tuple[Dataset, dict]:
    """(tokenized dataset with input_ids/labels, report per source)."""
    rng = random.Random(mixture.seed)
    loaded = [load_source(src, strict=strict) for src in mixture.datasets]
    capped = []
    for rows in loaded:
        convs = rows.conversations
        cap = rows.source.max_samples
        if cap is not None and len(convs) > cap:
            rows.dropped["over max_samples"] += len(convs) - cap
            convs = rng.sample(convs, cap)
        capped.append(convs)
    if len(capped) > 1:
        targets = share_counts([len(c) for c in capped], [r.source.weight for r in loaded])
    else:
        targets = [len(capped[0])]

    input_ids, labels, report = [], [], {}
    for rows, convs, target in zip(loaded, capped, targets):
        chosen = sample(convs, target, rng)
        dropped = rows.dropped
        used = truncated = 0
        for messages in chosen:
            ids, lab = encode_conversation(tokenizer, messages)
            if max_length is not None and len(ids) > max_length:
                if overlong == "drop":
                    dropped["longer than max_length"] += 1
                    continue
                ids, lab = ids[:max_length], lab[:max_length]
                truncated += 1
            if all(x == -100 for x in lab):
                dropped["no answer tokens left after truncation"] += 1
                continue
            input_ids.append(ids)
            labels.append(lab)
            used += 1
        report[rows.source.id] = {
            "format": rows.source.format,
            "requested_weight": rows.source.weight,
            "available": rows.available,
            "used": used,
            "truncated": truncated,
            "dropped": dict(dropped),
        }
        logger.info("data %s: available %d, used %d, dropped %s", rows.source.id, rows.available, used,
                    dict(dropped) or "none")
    if not input_ids:
        raise KotuneError("the dataset is empty after filtering: " + "; ".join(
            f"{k}: {v['available']} rows, dropped {v['dropped'] or 'none'}" for k, v in report.items()))
    order = list(range(len(input_ids)))
    rng.shuffle(order)
    dataset = Dataset.from_dict({"input_ids": [input_ids[i] for i in order], "labels": [labels[i] for i in order]})
    return dataset, report
