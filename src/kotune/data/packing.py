"""Batching: dynamic padding, padding-free packing, or best-fit-decreasing bins — never attention across examples.

`packing: true` keeps the recipe: a batch is still `per_device_train_batch_size` examples, concatenated into one
row without padding; `position_ids` restart at each example and the first label of each example is masked, so
the loss never predicts one example from another. `packing_strategy: bfd` (explicit) packs examples into bins of
`max_length` tokens the way TRL does; that changes the number of examples per step, and kotune logs it.
"""

from __future__ import annotations

import itertools
import logging
import math

from datasets import Dataset

from kotune.errors import KotuneError

logger = logging.getLogger(__name__)


def packing_mode(resolved: dict, training_args) -> str:
    """Which batching the user asked for, from the keys they set (TRL's defaults would silently mean bfd)."""
    if not training_args.packing:
        return "padded"
    strategy = resolved.get("packing_strategy")
    if strategy is None:
        return "padding_free"
    if strategy in ("bfd", "bfd_split"):
        return "bfd"
    raise KotuneError(f"packing_strategy: '{strategy}' lets examples attend to each other; use packing: true "
                      "(padding-free, the default) or packing_strategy: bfd")


def default_packing(base_config, trust_remote_code: bool) -> bool:
    """`packing` when the config leaves it out: padding-free (the same examples per step, no pad tokens) for the
    registered families, whose attention is tested to keep packed examples apart; padded batches for a family
    kotune does not know or a model whose code comes from its repo (trust_remote_code), where that is untested."""
    from kotune.models.architectures import GENERIC, spec_for

    spec = spec_for(getattr(base_config, "model_type", None))
    remote = trust_remote_code and bool(getattr(base_config, "auto_map", None))
    if spec is GENERIC or remote or spec.padded_because:
        why = "its modeling code comes with the model" if remote else spec.padded_because or \
            f"'{base_config.model_type}' is not a registered family"
        logger.info("packing: false (padded batches) by default: %s; set packing: true to use it anyway", why)
        return False
    logger.info("packing: true by default for %s: padding-free batches, the same examples per step (set packing: "
                "false for padded batches)", spec.name)
    return True


def collator(tokenizer, mode: str):
    """TRL's language-modeling collator: padded batches with an attention mask, or one padding-free row.

    >>> from types import SimpleNamespace
    >>> two = [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8, 9], "labels": [-100, 9]}]
    >>> row = collator(SimpleNamespace(pad_token_id=0), "padding_free")(two)
    >>> row["input_ids"], row["labels"], row["position_ids"]
    (tensor([[5, 6, 7, 8, 9]]), tensor([[-100,    6,    7, -100,    9]]), tensor([[0, 1, 2, 0, 1]]))
    >>> padded = collator(SimpleNamespace(pad_token_id=0), "padded")(two)
    >>> padded["input_ids"], padded["attention_mask"]
    (tensor([[5, 6, 7],
            [8, 9, 0]]), tensor([[1, 1, 1],
            [1, 1, 0]]))
    """
    if mode == "padding_free":
        return PaddingFreeCollator()
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    return DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id, padding_free=mode != "padded")


class PaddingFreeCollator:
    """TRL's padding-free batch, the same keys, values and dtypes (a test holds it to TRL's), built without the
    per-batch `repeat_interleave` that took 15 of TRL's 16 ms per batch of 8 examples here: collation runs in the
    training loop, between steps.

    >>> row = PaddingFreeCollator()([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8, 9]}])
    >>> row["labels"], row["cu_seq_lens_q"], row["max_length_q"], row["seq_idx"]
    (tensor([[-100,    6,    7, -100,    9]]), tensor([0, 3, 5], dtype=torch.int32), 3, tensor([[0, 0, 0, 1, 1]], dtype=torch.int32))

    A row that is itself a packed block (`seq_lengths`, as the pt stage's blocks of documents) keeps them apart:

    >>> row = PaddingFreeCollator()([{"input_ids": [5, 6, 7, 8, 9], "seq_lengths": [3, 2]}])
    >>> row["position_ids"], row["labels"]
    (tensor([[0, 1, 2, 0, 1]]), tensor([[-100,    6,    7, -100,    9]]))
    """

    def __call__(self, examples: list[dict]) -> dict:
        import torch

        lengths = [n for ex in examples for n in ex.get("seq_lengths") or [len(ex["input_ids"])]]
        input_ids = torch.cat([torch.tensor(ex["input_ids"]) for ex in examples])[None]
        labels = torch.cat([torch.tensor(ex.get("labels", ex["input_ids"])) for ex in examples])[None]
        position_ids = torch.cat([torch.arange(n) for n in lengths])[None]
        starts = position_ids[0] == 0
        labels[0, starts] = -100  # the first token of an example is never predicted from the previous one
        cu_seq_lens = torch.tensor([0, *itertools.accumulate(lengths)], dtype=torch.int32)
        return {"input_ids": input_ids, "labels": labels, "position_ids": position_ids,
                "cu_seq_lens_q": cu_seq_lens, "cu_seq_lens_k": cu_seq_lens,
                "max_length_q": max(lengths), "max_length_k": max(lengths),
                "seq_idx": (starts.cumsum(0) - 1).to(torch.int32)[None]}


def bfd_pack(dataset: Dataset, max_length: int) -> Dataset:
    """Best-fit-decreasing bins of at most `max_length` tokens (TRL's packer), with per-example `seq_lengths`."""
    from trl.data_utils import pack_dataset

    packed = pack_dataset(dataset.select_columns(["input_ids", "labels"]), max_length, "bfd")
    return packed


def log_bfd_step_change(n_examples: int, n_bins: int, args) -> None:
    world = max(1, args.world_size)
    per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * world
    before, after = math.ceil(n_examples / per_step), math.ceil(n_bins / per_step)
    logger.warning("packing_strategy=bfd: %d examples in %d bins of max_length %d; optimizer steps per epoch "
                   "%d → %d (about %.1f examples per step instead of %d)", n_examples, n_bins, args.max_length,
                   before, after, n_examples / max(after, 1), per_step)


def disable_cache_for_packing(model) -> None:
    """transformers 5 builds the block-diagonal mask from position_ids only when no KV cache is created; with the
    default `use_cache=True` a padding-free batch silently attends across examples (sdpa and eager alike)."""
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "use_cache", False):
        config.use_cache = False
        logger.info("packing: use_cache=false while training (else examples attend to each other)")


def useful_fraction(lengths: list[int], batch_size: int, mode: str, max_length: int | None = None) -> float:
    """Tokens that carry data ÷ tokens computed, for batches of consecutive examples."""
    useful = sum(lengths)
    if mode != "padded" or not useful:
        return 1.0
    computed = 0
    for start in range(0, len(lengths), batch_size):
        chunk = lengths[start:start + batch_size]
        computed += max(chunk) * len(chunk)
    return useful / computed
