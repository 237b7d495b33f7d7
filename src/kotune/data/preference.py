"""Preference data for DPO: the same sources and mixture as SFT, tokenized the way SFT tokenized its prompts.

Each row becomes `prompt_ids` (exactly the generation prompt inference sends), `chosen_ids` and `rejected_ids`
(answer + EOS, tokenized apart from the prompt). Rows are dropped and counted when an answer is empty, when
chosen equals rejected, when the prompt exceeds `max_prompt_length` tokens, or prompt + answer exceeds
`max_length` tokens.
"""

from __future__ import annotations

import logging
import random

from datasets import Dataset

from kotune.config import DatasetMixture
from kotune.data.mixture import sample, share_counts
from kotune.data.sources import load_source
from kotune.errors import KotuneError
from kotune.prompts import encode_conversations

logger = logging.getLogger(__name__)


def _split(ids: list[int], labels: list[int]) -> tuple[list[int], list[int]]:
    n = next(i for i, x in enumerate(labels) if x != -100)
    return ids[:n], ids[n:]


def build_preference_dataset(mixture: DatasetMixture, tokenizer, max_length: int | None,
                             max_prompt_length: int | None, strict: bool = False) -> tuple[Dataset, dict]:
    rng = random.Random(mixture.seed)
    loaded = []
    for src in mixture.datasets:
        if src.format != "preference":
            raise KotuneError(f"dataset '{src.id}': DPO needs format: preference ({{prompt, chosen, rejected}}), "
                              f"not '{src.format}'")
        loaded.append(load_source(src, strict=strict, seed=mixture.seed))
    capped = []
    for rows in loaded:
        indices = list(range(len(rows.records)))
        cap = rows.source.max_samples
        if cap is not None and len(indices) > cap:
            rows.dropped["over max_samples"] += len(indices) - cap
            indices = rng.sample(indices, cap)
        capped.append(indices)
    targets = share_counts([len(c) for c in capped], [r.source.weight for r in loaded]) if len(capped) > 1 \
        else [len(capped[0])]

    columns = {"prompt_ids": [], "chosen_ids": [], "rejected_ids": []}
    report = {}
    for rows, indices, target in zip(loaded, capped, targets):
        picks = sample(indices, target, rng)
        convs = []
        for i in picks:
            rec = rows.records[i]
            convs.append(rec["prompt"] + [{"role": "assistant", "content": rec["chosen"]}])
            convs.append(rec["prompt"] + [{"role": "assistant", "content": rec["rejected"]}])
        encoded = encode_conversations(tokenizer, convs)
        used = 0
        for k, index in enumerate(picks):
            prompt, chosen = _split(*encoded[2 * k])
            _, rejected = _split(*encoded[2 * k + 1])
            reason = None
            if max_prompt_length is not None and len(prompt) > max_prompt_length:
                reason = "prompt longer than max_prompt_length"
            elif max_length is not None and len(prompt) + max(len(chosen), len(rejected)) > max_length:
                reason = "longer than max_length"
            if reason:
                if strict:
                    raise KotuneError(f"dataset '{rows.source.id}', row {index + 1}: {reason} (strict: true)")
                rows.dropped[reason] += 1
                continue
            columns["prompt_ids"].append(prompt)
            columns["chosen_ids"].append(chosen)
            columns["rejected_ids"].append(rejected)
            used += 1
        report[rows.source.id] = {"format": "preference", "weight": rows.source.weight, "requested": target,
                                  "available": rows.available, "used": used, "dropped": dict(rows.dropped)}
        logger.info("data %s (preference): available %d, used %d, dropped %s", rows.source.id, rows.available,
                    used, dict(rows.dropped) or "none")
    if not columns["prompt_ids"]:
        raise KotuneError("the preference dataset is empty after filtering: " + "; ".join(
            f"{k}: {v['available']} rows, dropped {v['dropped'] or 'none'}" for k, v in report.items()))
    order = list(range(len(columns["prompt_ids"])))
    rng.shuffle(order)
    return Dataset.from_dict({k: [v[i] for i in order] for k, v in columns.items()}), report
