"""Test-only helpers over kotune's data path (one conversation, the first-epoch dataset, per-example losses) and the
preference experiments every preference stage shares."""

from __future__ import annotations

import json
from pathlib import Path

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


def train_qa(base, tmp_path, max_steps: int):
    """Fully fine-tune `base` on four Korean Q&A rows through train/sft.py (enough to memorize them); the run dir."""
    import json

    from conftest import base_config, run_sft_inprocess, write_config

    data = tmp_path / "qa.jsonl"
    data.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in QA_ROWS) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    cfg = base_config(base, out, dataset_mixture={"datasets": [{"id": str(data), "format": "instruction"}]},
                      use_peft=False, learning_rate=3.0e-3, max_steps=max_steps, per_device_train_batch_size=4)
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


# --- preference experiments (DPO, ORPO, SimPO, KTO, reward model, GRPO share them) -------------------------------
PREFS = [json.loads(line) for line in (Path(__file__).resolve().parents[1] / "src/kotune/data/sample/preference.jsonl")
         .read_text(encoding="utf-8").splitlines()]


def write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return path


def run_stage_script(stage: str, config_path, *overrides) -> int:
    """Run train/<stage>.py in this process, as `python train/<stage>.py CONFIG` would; its exit code."""
    import runpy
    import sys

    script = Path(__file__).resolve().parents[1] / "train" / f"{stage}.py"
    argv = sys.argv
    sys.argv = [str(script), str(config_path), *overrides]
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exit_:
        return int(exit_.code or 0)
    finally:
        sys.argv = argv
    return 0


def preference_config(model_dir, out, data, fmt: str = "preference", **extra):
    from conftest import base_config

    cfg = base_config(model_dir, out, dataset_mixture={"datasets": [{"id": str(data), "format": fmt}]},
                      max_length=128, max_prompt_length=64, learning_rate=5.0e-4, per_device_train_batch_size=4,
                      lora_r=64, lora_alpha=128, logging_steps=1)
    cfg.update(extra)
    return cfg


def swapped(rows):
    return [dict(r, chosen=r["rejected"], rejected=r["chosen"]) for r in rows]


def train_both_ways(stage: str, sft: dict, name: str, fmt: str = "preference", to_rows=None, **extra) -> dict:
    """Train `stage` from the SFT model on the training pairs (polite chosen) and, as a control, on the swapped
    pairs: {name: run dir, "swapped_" + name or "swapped" for DPO: run dir}."""
    from conftest import write_config

    root, runs = sft["root"], {}
    to_rows = to_rows or (lambda rows: rows)
    for key, rows in ((name, sft["train"]), ("swapped" if name == "dpo" else f"swapped_{name}", swapped(sft["train"]))):
        cfg = preference_config(sft["sft"], root / key, write_jsonl(root / f"{key}.jsonl", to_rows(rows)), fmt=fmt,
                                seed=0, **extra)
        cfg.pop("max_steps")
        assert run_stage_script(stage, write_config(root / f"{key}.yaml", cfg)) == 0
        runs[key] = root / key
    return runs


def answer_logp(model, tok, prompt, answer):
    """log p(answer | prompt) under the chat template, summed over the trained (answer) tokens."""
    ids, labels = encode_conversation(tok, [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}])
    x, y = torch.tensor([ids]), torch.tensor([labels])
    with torch.no_grad():
        logits = model(input_ids=x).logits[:, :-1].float()
    lp = torch.log_softmax(logits, -1).gather(-1, x[:, 1:, None])[..., 0]
    return float((lp * (y[:, 1:] != -100)).sum())


def measure_preference(run_dir, ref, held, beta=0.1):
    """Implied-reward accuracy and margin against the SFT reference, polite share and correctness of greedy answers."""
    import difflib

    from kotune.inference.generate import answer
    from kotune.inference.loading import load_for_inference

    model, tok = load_for_inference(run_dir)
    margins, polite, correct = [], 0, []
    for r in held:
        chosen = answer_logp(model, tok, r["prompt"], r["chosen"]) - answer_logp(*ref, r["prompt"], r["chosen"])
        rejected = answer_logp(model, tok, r["prompt"], r["rejected"]) - answer_logp(*ref, r["prompt"], r["rejected"])
        margins.append(beta * (chosen - rejected))
        out = answer(model, tok, r["prompt"], max_new_tokens=60)
        polite += "니다" in out
        correct.append(max(difflib.SequenceMatcher(None, out, y).ratio() for y in (r["chosen"], r["rejected"])))
    return {"accuracy": sum(m > 0 for m in margins) / len(margins), "margin": sum(margins) / len(margins),
            "polite": polite / len(held), "correct": sum(correct) / len(correct)}
