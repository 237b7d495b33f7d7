"""A training set whose KIT-19 phrasings change every epoch: one pre-tokenized variant per epoch."""

from __future__ import annotations

import math

import torch
from transformers import TrainerCallback


class EpochVariants(torch.utils.data.Dataset):
    """Serves variant `epoch % len(variants)`; all variants hold the same examples in the same order."""

    def __init__(self, variants):
        if len({len(v) for v in variants}) != 1:
            raise ValueError("epoch variants must have the same length")
        self.variants = list(variants)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.variants[0])

    def __getitem__(self, index):
        if index >= len(self):
            raise IndexError(index)
        return self.variants[self.epoch % len(self.variants)][index]


class SetEpoch(TrainerCallback):
    """Point the dataset at the current epoch's variant before the epoch's first batch (also after a resume)."""

    def __init__(self, dataset: EpochVariants):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.set_epoch(math.floor(state.epoch or 0))


def epochs_needed(n_examples: int, args) -> int:
    """How many epochs the run will start: from max_steps when set, else num_train_epochs."""
    world = max(1, getattr(args, "world_size", 1))
    per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * world
    if args.max_steps and args.max_steps > 0:
        return max(1, math.ceil(args.max_steps * per_step / max(n_examples, 1)))
    return max(1, math.ceil(args.num_train_epochs))
