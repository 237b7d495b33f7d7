"""Korean answer health at eval: at each evaluation, answer a few eval prompts greedily and log how Korean the
answers are and in which speech level. A reasoning base's answer is scored after its thinking (the eval prompts
carry the thinking switch training used; the reasoning block is cut off). A model that drifts into English or Chinese (as Qwen bases often do) or
changes register shows it in the logs, TensorBoard and loss.png, long before a benchmark would.

>>> hangul_share("서울입니다. Seoul!")
0.5
>>> [speech_level(t) for t in ["서울입니다.", "서울이에요!", "서울이야", "Seoul."]]
['합쇼체', '해요체', '반말', 'other']
"""

from __future__ import annotations

import logging
import re
from collections import Counter

from transformers import TrainerCallback

logger = logging.getLogger("kotune")

HANGUL = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")
LETTER = re.compile(r"[^\W\d_]")  # letters of any script (Hangul, Latin, Han, ...)
LEVELS = ("합쇼체", "해요체", "반말", "other")


def hangul_share(text: str) -> float:
    """Hangul letters among all letters (digits, spaces and punctuation do not count); 0 for no letters."""
    letters = LETTER.findall(text)
    return round(sum(1 for c in letters if HANGUL.match(c)) / len(letters), 4) if letters else 0.0


def speech_level(text: str) -> str:
    """The speech level of an answer's last sentence, from its ending: -니다/-니까 (합쇼체), -요/-죠 (해요체), another
    Hangul ending (반말), or 'other' (no Hangul ending)."""
    ending = re.search(r"[\uac00-\ud7a3]+$", text.strip().rstrip(".!?…~\"')]」』 "))
    if not ending:
        return "other"
    last = ending.group()
    if last.endswith(("니다", "니까")):
        return "합쇼체"
    if last.endswith(("요", "죠")):
        return "해요체"
    return "반말"


def health_metrics(answers: list[str]) -> dict[str, float]:
    """eval_hangul_share (mean over answers) and the share of each speech level."""
    levels = Counter(speech_level(a) for a in answers)
    metrics = {"eval_hangul_share": round(sum(map(hangul_share, answers)) / len(answers), 4)}
    metrics.update({f"eval_speech_{level}": round(levels[level] / len(answers), 4) for level in LEVELS})
    return metrics


def has_prompts(eval_dataset) -> bool:
    """Whether eval rows carry prompt ids to answer (SFT and pairwise rows do; reward-model pairs and GRPO's message
    prompts do not, and a score model cannot generate)."""
    columns = set(eval_dataset.column_names)
    return "prompt_ids" in columns or {"input_ids", "labels"} <= columns


def eval_prompts(eval_dataset, n: int) -> list[list[int]]:
    """The prompt ids of the first `n` eval examples: everything before the first trained token (SFT rows) or the
    `prompt_ids` column (preference rows)."""
    rows = eval_dataset.select(range(min(n, len(eval_dataset))))
    if "prompt_ids" in rows.column_names:
        return [list(ids) for ids in rows["prompt_ids"]]
    return [ids[:next(i for i, label in enumerate(labels) if label != -100)]
            for ids, labels in zip(rows["input_ids"], rows["labels"])]


class AnswerHealth(TrainerCallback):
    """After each evaluation, greedy answers to the eval prompts, scored by `health_metrics` and logged through the
    trainer (so TensorBoard, trainer_state.json and loss.png get them)."""

    def __init__(self, tokenizer, prompts: list[list[int]], max_new_tokens: int = 64):
        self.tokenizer, self.prompts, self.max_new_tokens = tokenizer, prompts, max_new_tokens
        self.trainer = None

    def bind(self, trainer) -> AnswerHealth:
        self.trainer = trainer
        return self

    def on_evaluate(self, args, state, control, model=None, **kwargs):
        if self.trainer is None or model is None or not self.prompts:
            return
        import torch

        from kotune.data.thinking import prompt_opens, visible_answer
        from kotune.models.loading import stop_ids

        was_training = model.training
        model.eval()
        answers = []
        stops = stop_ids(self.tokenizer, getattr(getattr(model, "generation_config", None), "eos_token_id", None))
        with torch.no_grad():
            for ids in self.prompts:
                input_ids = torch.tensor([ids], device=model.device)
                out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), do_sample=False,
                                     max_new_tokens=self.max_new_tokens, eos_token_id=stops, use_cache=True,
                                     pad_token_id=self.tokenizer.pad_token_id)
                opened = prompt_opens(self.tokenizer.decode(ids, skip_special_tokens=False))
                answers.append(visible_answer(self.tokenizer, out[0, len(ids):].tolist(), opened))
        if was_training:
            model.train()
        metrics = health_metrics(answers)
        logger.info("answer health at step %d: Hangul %.2f, %s; e.g. %r", state.global_step,
                    metrics["eval_hangul_share"],
                    ", ".join(f"{level} {metrics[f'eval_speech_{level}']:.2f}" for level in LEVELS), answers[0][:60])
        self.trainer.log(metrics)
