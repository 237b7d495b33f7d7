"""Test-only helpers over kotune's data path: one conversation, the first-epoch dataset, per-example losses."""

from __future__ import annotations

import torch

from kotune.data.encode import encode_conversations
from kotune.data.sft_dataset import build_sft_data


def encode_conversation(tokenizer, messages: list[dict]) -> tuple[list[int], list[int]]:
    """(input_ids, labels) for one conversation."""
    return encode_conversations(tokenizer, [messages])[0]


def build_sft_variants(mixture, tokenizer, max_length, overlong: str = "drop", strict: bool = False, **kw):
    """The epoch variants and the report, for a mixture without an eval split."""
    datasets, _, report = build_sft_data(mixture, tokenizer, max_length, overlong, strict, **kw)
    return datasets, report


def build_sft_dataset(mixture, tokenizer, max_length, overlong: str = "drop", strict: bool = False):
    """The first-epoch dataset and the report."""
    datasets, report = build_sft_variants(mixture, tokenizer, max_length, overlong, strict)
    return datasets[0], report


def example_losses(model, batch: dict) -> torch.Tensor:
    """Mean next-token loss of each example in a padded or padding-free batch (for checks and reports)."""
    out = model(**{k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "position_ids")},
                use_cache=False)
    logits = out.logits[:, :-1].float()
    labels = batch["labels"][:, 1:]
    tok_loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100, reduction="none")
    if "position_ids" in batch and batch["input_ids"].shape[0] == 1:
        starts = (batch["position_ids"][0] == 0).nonzero().flatten().tolist() + [batch["input_ids"].shape[1]]
        losses = []
        for s, e in zip(starts[:-1], starts[1:]):
            seg_labels = labels[0, s:e - 1] if e - 1 > s else labels[0, s:s]
            seg = tok_loss[0, s:e - 1]
            mask = seg_labels != -100
            losses.append(seg[mask].mean())
        return torch.stack(losses)
    mask = labels != -100
    return (tok_loss * mask).sum(1) / mask.sum(1)
