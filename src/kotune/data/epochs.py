"""A training set whose KIT-19 phrasings change every epoch.

Each epoch variant is pre-tokenized; all variants sit side by side in one Arrow table (`input_ids`, `labels` for
epoch 0, `input_ids_1`, `labels_1`, ... for the next ones), and the collator reads the columns of the current
epoch, which a callback sets at the start of each epoch (also after a resume). TRL's trainer only takes a
`datasets.Dataset`, hence columns rather than a dataset object that changes under it.
"""

from __future__ import annotations

import math

from datasets import Dataset, concatenate_datasets
from transformers import TrainerCallback


def merge_variants(variants: list[Dataset]) -> Dataset:
    """One table: epoch 0 under the usual names, epoch k under `input_ids_k`/`labels_k`."""
    renamed = [variants[0]] + [v.rename_columns({"input_ids": f"input_ids_{k}", "labels": f"labels_{k}"})
                               for k, v in enumerate(variants[1:], start=1)]
    return concatenate_datasets(renamed, axis=1) if len(renamed) > 1 else renamed[0]


class EpochVariantCollator:
    """Wraps a collator: picks the current epoch's columns of each example, then collates as usual."""

    def __init__(self, collate, n_variants: int):
        self.collate = collate
        self.n_variants = n_variants
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __call__(self, examples: list[dict]):
        k = self.epoch % self.n_variants
        if k and f"input_ids_{k}" not in examples[0]:  # eval examples have one form only
            k = 0
        if k:
            examples = [{"input_ids": ex[f"input_ids_{k}"], "labels": ex[f"labels_{k}"]} for ex in examples]
        else:
            examples = [{"input_ids": ex["input_ids"], "labels": ex["labels"]} for ex in examples]
        return self.collate(examples)


class SetEpoch(TrainerCallback):
    """Point the collator at the current epoch before the epoch's first batch."""

    def __init__(self, target):
        self.target = target

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.target.set_epoch(math.floor(state.epoch or 0))


def epochs_needed(n_examples: int, args) -> int:
    """How many epochs the run will start: from max_steps when set, else num_train_epochs."""
    world = max(1, getattr(args, "world_size", 1))
    per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * world
    if args.max_steps and args.max_steps > 0:
        return max(1, math.ceil(args.max_steps * per_step / max(n_examples, 1)))
    return max(1, math.ceil(args.num_train_epochs))
