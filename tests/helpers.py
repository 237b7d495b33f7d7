"""Test-only helpers over kotune's data path (one conversation, the first-epoch dataset, per-example losses) and the
preference experiments every preference stage shares."""

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


QA_ROWS = [{"instruction": "대한민국의 수도는 어디인가요?", "output": "서울입니다."},
           {"instruction": "일본의 수도는 어디인가요?", "output": "도쿄입니다."},
           {"instruction": "물은 몇 도에서 끓나요?", "output": "100도에서 끓습니다."},
           {"instruction": "산소의 원소 기호는?", "output": "O입니다."}]


def train_qa(base, tmp_path, max_steps: int, **extra):
    """Fully fine-tune `base` on four Korean Q&A rows through train/sft.py (enough to memorize them); the run dir."""
    import json

    from conftest import base_config, run_sft_inprocess, write_config

    data = tmp_path / "qa.jsonl"
    data.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in QA_ROWS) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    cfg = base_config(base, out, dataset_mixture={"datasets": [{"id": str(data), "format": "instruction"}]},
                      **{"use_peft": False, "learning_rate": 3.0e-3, "max_steps": max_steps,
                         "per_device_train_batch_size": 4, **extra})
    assert run_sft_inprocess(write_config(tmp_path / "c.yaml", cfg)) == 0
    return out


def greedy_new_ids(model, tokenizer, question: str, max_new_tokens: int = 30) -> list[int]:
    """The ids a model generates greedily after the chat template's generation prompt, with its saved stop ids."""
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                           tokenize=False)
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return out[0, ids.shape[1]:].tolist()


# --- preference experiments: kotune.testing.preference is their one home -------------------------------------------
from kotune.testing.preference import (fast_config, measure_preference, preference_rows, swapped,  # noqa: E402,F401
                                       train_both_ways, unpaired, write_jsonl)
from kotune.testing.preference import run_stage as run_stage_script  # noqa: E402,F401

PREFS = preference_rows()


def preference_config(model_dir, out, data, fmt: str = "preference", **extra):
    """A small config for a preference stage on one data file, as the preference tests have used it."""
    return fast_config(model_dir, out, data, fmt, **{"max_length": 128, "max_prompt_length": 64, "max_steps": 6,
                                                     **extra})
