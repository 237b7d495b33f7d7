"""Aggregations for kotune's lm-eval task YAMLs (referenced as `!function utils.macro_f1`)."""

from __future__ import annotations


def macro_f1(items) -> float:
    """Macro F1 over (gold, prediction) pairs: every class counts the same, so a model that always answers
    the majority class scores low even where accuracy looks fine (KLUE YNAT, KLUE STS)."""
    from sklearn.metrics import f1_score

    golds, preds = zip(*items)
    return float(f1_score(golds, preds, average="macro"))
