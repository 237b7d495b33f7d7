"""Likelihood displacement watch for preference stages.

DPO-style losses raise the margin of chosen over rejected answers, and can do it by pushing both down: the chosen
answers become less likely than at the start (likelihood displacement). On Korean style pairs that share their
content ("도쿄입니다." / "도쿄야."), the policy then learns the polite ending and drops the content ("일입니다.").
The margin and reward accuracy look perfect meanwhile, so kotune measures the chosen answers themselves: at each
training log it scores a fixed probe of chosen answers from the training rows and logs

- `chosen_logp_change`: the mean change of log p(chosen | prompt) since the start, in nats per answer;
- `chosen_less_likely`: the share of probe answers at least 0.1 nat (10%) less likely than at the start.

When that share reaches DISPLACED_SHARE, it warns once, by name, with the fix. The figures go to the log history
(TensorBoard, loss.png) and, at the end, to run_info.json under `likelihood_displacement`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from transformers import TrainerCallback

logger = logging.getLogger("kotune")

PROBE_ROWS = 16  # chosen answers scored at each log: a forward each, no gradient
FALL_NATS = 0.1  # an answer counts as displaced when log p fell by more than this (about 10% less likely)
DISPLACED_SHARE = 0.2  # warn when this share of the probe is displaced (measured: whole answers 0.00-0.06,
#                        answers cut short 0.28-0.50 on the preference experiment, bench/RESULTS.md)


def chosen_probe(dataset, n: int = PROBE_ROWS) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, chosen answer ids) of the first `n` rows that have a chosen answer: pairwise rows
    (`chosen_ids`) or KTO's desirable rows (`completion_ids` with `label` true).

    >>> from datasets import Dataset
    >>> chosen_probe(Dataset.from_list([{"prompt_ids": [1], "completion_ids": [5, 2], "label": False},
    ...                                 {"prompt_ids": [3], "completion_ids": [6, 2], "label": True}]))
    [([3], [6, 2])]
    """
    columns = set(dataset.column_names)
    if {"prompt_ids", "chosen_ids"} <= columns:
        rows = dataset.select(range(min(n, len(dataset))))
        return [(list(p), list(c)) for p, c in zip(rows["prompt_ids"], rows["chosen_ids"])]
    if {"prompt_ids", "completion_ids", "label"} <= columns:
        probe = []
        for row in dataset:
            if row["label"]:
                probe.append((list(row["prompt_ids"]), list(row["completion_ids"])))
                if len(probe) == n:
                    break
        return probe
    return []


def answer_logps(model, probe: list[tuple[list[int], list[int]]], batch_size: int = 8) -> list[float]:
    """log p(answer | prompt) per probe row, summed over the answer tokens (no gradient, eval mode).

    Rows go in left-padded batches, so every answer ends at the last position and logits are kept for the last
    answer positions only: a large vocabulary costs little, and 16 rows cost two forwards."""
    import torch

    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.no_grad():
            for i in range(0, len(probe), batch_size):
                rows = [p + a for p, a in probe[i:i + batch_size]]
                answers = [a for _, a in probe[i:i + batch_size]]
                width, keep = max(map(len, rows)), max(map(len, answers))
                ids = torch.tensor([[0] * (width - len(r)) + r for r in rows], device=model.device)
                mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=model.device)
                positions = (mask.cumsum(-1) - 1).clamp(min=0)
                logits = model(input_ids=ids, attention_mask=mask, position_ids=positions,
                               logits_to_keep=keep + 1).logits[:, :-1].float()
                logps = torch.log_softmax(logits, -1).gather(-1, ids[:, -keep:, None])[..., 0]
                for row, answer in enumerate(answers):
                    out.append(float(logps[row, keep - len(answer):].sum()))
    finally:
        if was_training:
            model.train()
    return out


class ChosenLikelihoodWatch(TrainerCallback):
    """Scores the probe at the start and at each training log; see the module docstring. Runs on every rank (a
    sharded model needs all of them for a forward); only the main process writes and warns."""

    def __init__(self, probe: list[tuple[list[int], list[int]]], stage: str):
        self.probe, self.stage = probe, stage
        self.start: list[float] | None = None
        self.start_step = 0
        self.history: list[dict] = []
        self.warned_at: int | None = None
        self.model = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.probe and model is not None:
            self.model = model
            self.start, self.start_step = answer_logps(model, self.probe), state.global_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.start is None or logs is None or "loss" not in logs:
            return
        now = answer_logps(self.model, self.probe)
        change = [b - a for a, b in zip(self.start, now)]
        figures = {"chosen_logp_change": round(sum(change) / len(change), 4),
                   "chosen_less_likely": round(sum(c < -FALL_NATS for c in change) / len(change), 4)}
        logs.update(figures)  # this callback runs first: TensorBoard and the other trackers see the figures
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(figures)
        self.history.append({"step": state.global_step, **figures})
        if self.warned_at is None and figures["chosen_less_likely"] >= DISPLACED_SHARE:
            self.warned_at = state.global_step
            if state.is_world_process_zero:
                logger.warning(
                    "likelihood displacement at step %d: %.0f%% of %d chosen training answers are less likely than "
                    "at the start (mean change %+.2f nats per answer). The %s loss is widening the margin by pushing "
                    "the chosen answers down too, which cuts answers short. Add an NLL term on the chosen answers "
                    "(DPO/IPO: loss_type: [sigmoid, sft] or [ipo, sft] with loss_weights: [1.0, 1.0]), raise beta, "
                    "or lower learning_rate.", state.global_step, 100 * figures["chosen_less_likely"],
                    len(self.probe), figures["chosen_logp_change"], self.stage)

    def summary(self) -> dict:
        last = self.history[-1] if self.history else {}
        return {"probe_answers": len(self.probe), "start_step": self.start_step,
                "start_mean_logp": round(sum(self.start) / len(self.start), 4) if self.start else None,
                "final_chosen_logp_change": last.get("chosen_logp_change"),
                "final_chosen_less_likely": last.get("chosen_less_likely"),
                "max_chosen_less_likely": max((h["chosen_less_likely"] for h in self.history), default=None),
                "fall_nats": FALL_NATS, "warn_share": DISPLACED_SHARE, "warned_at_step": self.warned_at}

    def on_train_end(self, args, state, control, **kwargs):
        if self.start is None or not state.is_world_process_zero:
            return
        path = Path(args.output_dir, "run_info.json")
        record = json.loads(path.read_text()) if path.is_file() else {}
        record["likelihood_displacement"] = self.summary()
        path.write_text(json.dumps(record, indent=2, ensure_ascii=False))


def watch_first(trainer, watch: ChosenLikelihoodWatch) -> None:
    """Put the watch before the trackers, so the figures it adds to a log reach TensorBoard, W&B and MLflow."""
    trainer.callback_handler.callbacks.insert(0, watch)
