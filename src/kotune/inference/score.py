"""`kotune score RM_DIR ROWS.jsonl [--out scores.jsonl]`: a reward model's score for each {prompt, answer} row.

Rows are encoded exactly as the reward model was trained (the saved chat template, the answer ending as a trained
turn ends), so a score here is the score RewardTrainer optimized. RM_DIR is a `kotune rm` output: a full
sequence-classification model, or a LoRA adapter with its score head.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kotune.errors import KotuneError


def load_reward_model(run_dir: str | Path):
    """(model, tokenizer) of a reward-model run dir, in eval mode."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from kotune.inference.loading import run_kind

    kind = run_kind(run_dir)
    if kind == "adapter":
        from peft import AutoPeftModelForSequenceClassification

        model = AutoPeftModelForSequenceClassification.from_pretrained(run_dir, num_labels=1)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(run_dir)
    if model.config.num_labels != 1:
        raise KotuneError(f"'{run_dir}' has {model.config.num_labels} output labels; a reward model has one "
                          "(train it with `kotune rm`)")
    return model.eval(), AutoTokenizer.from_pretrained(run_dir)


def score_rows(run_dir: str | Path, rows: list[dict]) -> list[float]:
    import torch

    from kotune.data.encode import encode_conversations

    model, tokenizer = load_reward_model(run_dir)
    convs = []
    for i, row in enumerate(rows):
        prompt, answer = row.get("prompt"), row.get("answer")
        if not isinstance(prompt, str) or not isinstance(answer, str) or not prompt.strip() or not answer.strip():
            raise KotuneError(f"row {i + 1}: needs text 'prompt' and 'answer' fields")
        convs.append([{"role": "user", "content": prompt.strip()}, {"role": "assistant", "content": answer.strip()}])
    scores = []
    with torch.no_grad():
        for ids, _ in encode_conversations(tokenizer, convs):
            scores.append(float(model(input_ids=torch.tensor([ids])).logits[0, 0]))
    return scores


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="kotune score", description="Score {prompt, answer} JSONL rows with a "
                                                                      "reward model trained by `kotune rm`.")
    parser.add_argument("run_dir")
    parser.add_argument("rows", help="JSONL with 'prompt' and 'answer' text fields")
    parser.add_argument("--out", help="write the rows with a 'score' field here (default: stdout)")
    args = parser.parse_args(argv)
    path = Path(args.rows)
    if not path.is_file():
        raise KotuneError(f"'{path}' not found")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise KotuneError(f"{path}, line {n}: not JSON ({err.msg})") from None
    scored = [dict(r, score=s) for r, s in zip(rows, score_rows(args.run_dir, rows))]
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in scored)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        print(text, end="")
    return 0
