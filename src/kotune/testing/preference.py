"""The preference experiment every preference stage is judged by (tests and bench/preference_stages.py share it).

A tiny model is SFT-trained on both registers of every bundled preference answer (polite 합쇼체 and casual 반말), so
it starts indifferent. A stage then trains on 36 pairs with polite chosen, and a control on the same pairs swapped.
On 12 held-out prompts we measure the implied reward against the SFT model (log-prob margin of chosen over
rejected), the share of polite greedy answers, and how close the answers stay to a reference answer.
"""

from __future__ import annotations

import difflib
import json
import random
from pathlib import Path

from kotune.testing.tiny import sample_path, tiny_base

HELD_OUT = 12

# Each method's settings on the experiment (tests and bench/preference_stages.py read them from here). The stages
# that can push the chosen answers down (DPO, IPO, KTO) keep them whole at these settings, measured on CPUs with and
# without AVX512 (bench/RESULTS.md): DPO and IPO add TRL's NLL term on the chosen answers (`sft`, as in RPO); KTO,
# which has no such term, holds closer to its reference with beta 0.5. The learning rate is half fast_config's
# (SimPO at 5e-4 cut answers on a CPU without AVX512: 0.94); ORPO's own NLL term keeps them whole at 5e-4.
METHODS = {
    "dpo": ("dpo", {"beta": 0.1, "loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 1.0],
                    "learning_rate": 2.5e-4, "num_train_epochs": 3}),
    "ipo": ("dpo", {"beta": 0.5, "loss_type": ["ipo", "sft"], "loss_weights": [1.0, 1.0],
                    "learning_rate": 2.5e-4, "num_train_epochs": 3}),
    "orpo": ("orpo", {"beta": 0.5, "num_train_epochs": 3}),
    "simpo": ("simpo", {"beta": 2.0, "simpo_gamma": 0.5, "learning_rate": 2.5e-4, "num_train_epochs": 3}),
    "kto": ("kto", {"beta": 0.5, "learning_rate": 2.5e-4, "num_train_epochs": 3}),
}
# The loss alone, as TRL ships it: the control that shows what the settings above prevent.
PLAIN_DPO = {"beta": 0.1, "loss_type": ["sigmoid"], "num_train_epochs": 3}


def preference_rows() -> list[dict]:
    return [json.loads(line) for line in sample_path("preference.jsonl").read_text(encoding="utf-8").splitlines()]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def write_yaml(path: Path, cfg: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return path


def run_stage(stage: str, config_path: Path, *overrides: str) -> int:
    """A registered stage's runner in this process (the code train/<stage>.py runs); its exit code."""
    from kotune.cli import train
    from kotune.errors import user_errors_exit

    try:
        with user_errors_exit():
            return train(stage, [str(config_path), *overrides])
    except SystemExit as exit_:
        return int(exit_.code or 0)


def fast_config(model_dir, out, data, fmt: str, **extra) -> dict:
    """A small CPU config (fp32, no checkpointing, no trackers) for a stage on one data file."""
    cfg = {"model_name_or_path": str(model_dir), "dtype": "float32", "output_dir": str(out),
           "dataset_mixture": {"seed": 1, "datasets": [{"id": str(data), "format": fmt}]},
           "per_device_train_batch_size": 4, "learning_rate": 5.0e-4, "logging_steps": 1, "save_strategy": "no",
           "bf16": False, "gradient_checkpointing": False, "report_to": [], "seed": 0,
           "use_peft": True, "lora_r": 64, "lora_alpha": 128, "lora_dropout": 0.0}
    cfg.update(extra)
    return cfg


def sft_start(root: Path) -> dict:
    """The SFT model on both registers, and the held-out and training pairs."""
    rows = preference_rows()
    order = list(range(len(rows)))
    random.Random(0).shuffle(order)
    held, train = [rows[i] for i in order[:HELD_OUT]], [rows[i] for i in order[HELD_OUT:]]
    base = tiny_base("gpt_neox", root / "base", hidden=128, layers=2, seed=0, init_std=0.2)
    sft_rows = [{"instruction": r["prompt"], "output": y} for r in rows for y in (r["chosen"], r["rejected"])]
    cfg = fast_config(base, root / "sft", write_jsonl(root / "sft.jsonl", sft_rows), "instruction",
                      prompt_format="koquality", max_length=128, num_train_epochs=15, per_device_train_batch_size=8,
                      lr_scheduler_type="cosine", learning_rate=1.0e-2,
                      packing=False)  # the experiment's fixed start: padded, as measured in bench/RESULTS.md
    assert run_stage("sft", write_yaml(root / "sft.yaml", cfg)) == 0
    return {"root": root, "held": held, "train": train, "sft": root / "sft", "base": base}


def swapped(rows: list[dict]) -> list[dict]:
    return [dict(r, chosen=r["rejected"], rejected=r["chosen"]) for r in rows]


def unpaired(rows: list[dict]) -> list[dict]:
    """KTO's own layout (trl-lib/kto-mix-14k): {prompt, completion, label}, one row per answer."""
    return [row for r in rows for row in ({"prompt": r["prompt"], "completion": r["chosen"], "label": True},
                                          {"prompt": r["prompt"], "completion": r["rejected"], "label": False})]


def train_both_ways(stage: str, start: dict, name: str, fmt: str = "preference", to_rows=None, **extra) -> dict:
    """`stage` from the SFT model on the training pairs and, as a control, on the swapped pairs:
    {name: run dir, "swapped" (DPO) or "swapped_<name>": run dir}."""
    root, runs, to_rows = start["root"], {}, to_rows or (lambda rows: rows)
    for key, rows in ((name, start["train"]), ("swapped" if name == "dpo" else f"swapped_{name}",
                                               swapped(start["train"]))):
        cfg = fast_config(start["sft"], root / key, write_jsonl(root / f"{key}.jsonl", to_rows(rows)), fmt,
                          max_length=128, max_prompt_length=64, **extra)
        assert run_stage(stage, write_yaml(root / f"{key}.yaml", cfg)) == 0
        runs[key] = root / key
    return runs


def answer_logp(model, tok, prompt: str, answer: str) -> float:
    """log p(answer | prompt) under the chat template, summed over the trained (answer) tokens."""
    import torch

    from kotune.data.encode import encode_conversations

    ((ids, labels),) = encode_conversations(tok, [[{"role": "user", "content": prompt},
                                                   {"role": "assistant", "content": answer}]])
    x, y = torch.tensor([ids]), torch.tensor([labels])
    with torch.no_grad():
        logits = model(input_ids=x).logits[:, :-1].float()
    lp = torch.log_softmax(logits, -1).gather(-1, x[:, 1:, None])[..., 0]
    return float((lp * (y[:, 1:] != -100)).sum())


def measure_preference(run_dir, ref, held: list[dict], beta: float = 0.1) -> dict:
    """Implied-reward accuracy and mean margin against the reference (model, tokenizer), polite share and
    correctness (best-match similarity to either reference answer) of greedy answers."""
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
