"""The end of a sweep: one row per run (summary.md, summary.csv) and a plot of the loss curves and scores.

Everything is read back from the run dirs (trainer_state.json, train_results.json) and the sweep's records, so a
summary can be rebuilt at any time from what is on disk.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any


def cli_value(value: Any) -> str:
    """A value as the command line reads it back (YAML): JSON, except strings YAML reads back unchanged
    ('no' would come back as False, so it is quoted)."""
    import yaml

    if isinstance(value, str):
        try:
            if yaml.safe_load(value) == value:
                return value
        except yaml.YAMLError:
            pass
    return json.dumps(value, ensure_ascii=False)


# ---------------------------------------------------------------------------------------------------------------


def _log_history(run_dir: Path) -> list[dict]:
    for path in [run_dir / "trainer_state.json", *sorted(run_dir.glob("checkpoint-*/trainer_state.json"),
                                                         key=lambda p: int(p.parent.name.split("-")[1]))[::-1]]:
        try:
            return json.loads(path.read_text())["log_history"]
        except (OSError, ValueError, KeyError):
            continue
    return []


def summarize(out: Path, runs: list[tuple[str, dict]], records: dict) -> list[dict[str, Any]]:
    """One row per run: overrides, status, final/best train loss, eval loss, lm-eval metrics, tokens/s, time."""
    rows = []
    for name, overrides in runs:
        record, run_dir = records[name], out / name
        history = _log_history(run_dir)
        losses = [h["loss"] for h in history if "loss" in h and math.isfinite(h["loss"])]
        eval_losses = [h["eval_loss"] for h in history if "eval_loss" in h]
        results = _read_json(run_dir / "train_results.json")
        tokens = max((h["num_tokens"] for h in history if "num_tokens" in h), default=None)
        runtime = results.get("train_runtime")
        row: dict[str, Any] = {"run": name, **{k: cli_value(v) for k, v in overrides.items()},
                               "status": record.status,
                               "steps": max((h.get("step", 0) for h in history), default=None),
                               "final_loss": losses[-1] if losses else None,
                               "best_loss": min(losses) if losses else None}
        if eval_losses:
            row["final_eval_loss"], row["best_eval_loss"] = eval_losses[-1], min(eval_losses)
        row.update(_flatten(record.eval or {}))  # task/metric, or 5-shot/task/metric for several shot counts
        row["useful_tokens_per_s"] = round(tokens / runtime, 1) if tokens and runtime else None
        row["wall_time_s"] = record.wall_time_s
        rows.append(row)
    return rows


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        flat.update(_flatten(value, f"{prefix}{key}/") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return flat


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _columns(rows: list[dict]) -> list[str]:
    cols: list[str] = []
    for row in rows:
        cols += [k for k in row if k not in cols]
    return cols


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def write_summary(out: Path, rows: list[dict], records: dict) -> None:
    """summary.md (a table to paste), summary.csv (for a spreadsheet) and summary.png (loss curves + metrics)."""
    cols = _columns(rows)
    with open(out / "summary.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=cols)
        writer.writeheader()
        writer.writerows([{k: ("" if row.get(k) is None else row.get(k)) for k in cols} for row in rows])
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(_cell(row.get(k)) for k in cols) + " |" for row in rows]
    failed = [r for r in records.values() if r.status == "failed" or r.eval_error]
    if failed:
        lines += ["", "Failures:"]
        lines += [f"- {r.name}: {r.error or r.eval_error} (log: logs/{r.name}.log)" for r in failed]
    (out / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    plot_summary(out, rows)


def plot_summary(out: Path, rows: list[dict]) -> None:
    """Left: every run's training loss by step. Right: final loss per run, or the lm-eval metrics if any."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (curves, bars) = plt.subplots(1, 2, figsize=(12, 4.5))
    for row in rows:
        history = _log_history(out / row["run"])
        points = [(h["step"], h["loss"]) for h in history if "loss" in h and math.isfinite(h["loss"])]
        if points:
            curves.plot(*zip(*points), label=row["run"], marker=".")
    curves.set(xlabel="step", ylabel="training loss", title="loss curves")
    if curves.lines:
        curves.legend(fontsize=8)
    metric_cols = [c for c in _columns(rows) if "/" in c]
    names = [r["run"] for r in rows]
    if metric_cols:
        width = 0.8 / len(metric_cols)
        for j, col in enumerate(metric_cols):
            bars.bar([i + j * width for i in range(len(rows))], [r.get(col) or 0 for r in rows], width, label=col)
        bars.set(ylabel="score", title="evaluation")
        bars.legend(fontsize=7)
    else:
        bars.bar(range(len(rows)), [r.get("final_loss") or 0 for r in rows], 0.4, label="final loss")
        bars.bar([i + 0.4 for i in range(len(rows))], [r.get("best_loss") or 0 for r in rows], 0.4, label="best loss")
        bars.set(ylabel="training loss", title="final and best loss")
        bars.legend(fontsize=8)
    bars.set_xticks(range(len(rows)), names, rotation=30, ha="right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "summary.png", dpi=100)
    plt.close(fig)
