"""Scores out of lm-eval's results, the records kotune writes, and the tables: KIT-19's and KoQuality's shapes for
the KIT-19 tasks, one table per lm-eval suite (the suite, then its subject groups or subsets) for the rest."""

from __future__ import annotations

from typing import Any

from kotune.eval.tasks import TASKS, label_of

METRICS = (("acc", "ACC"), ("acc_norm", "ACC_Norm"), ("macro_f1", "F1 (macro)"))


def scores_of(raw: dict[str, Any]) -> dict[str, dict[str, float]]:
    """{task: {acc, macro_f1[, acc_norm]}} for the KIT-19 tasks ("f1,none" is macro F1 in these), and for every
    other row lm-eval reports (suites, their groups, their tasks) its metrics as lm-eval names them: `acc`,
    `exact_match`, or `metric,filter` where a filter other than lm-eval's "none" picked the answer."""
    out = {}
    for task, metrics in raw["results"].items():
        if task not in TASKS:
            row = {key.removesuffix(",none"): float(v) for key, v in metrics.items()
                   if "," in key and "_stderr," not in key and isinstance(v, (int, float)) and not isinstance(v, bool)}
            if row:
                out[task] = row
            continue
        row = {"acc": metrics.get("acc,none"), "macro_f1": metrics.get("f1,none")}
        if "acc_norm,none" in metrics:
            row["acc_norm"] = metrics["acc_norm,none"]
        out[task] = {k: float(v) for k, v in row.items() if v is not None}
    return out


def eval_record(model: str, model_args: dict, raws: dict[int, dict], shots, limit, chat: bool) -> dict[str, Any]:
    """results.json / baseline.json. One shot count: tasks {task: scores}; several: tasks {"5-shot": {...}}."""
    keep = ("results", "groups", "group_subtasks", "configs", "versions", "n-shot", "n-samples", "higher_is_better",
            "lm_eval_version")
    scores = {k: scores_of(raw) for k, raw in raws.items()}
    kept = {k: {key: raw[key] for key in keep if key in raw} for k, raw in raws.items()}
    several = isinstance(shots, list)
    return {"model": model, "model_args": model_args, "num_fewshot": shots, "limit": limit,
            "apply_chat_template": chat,
            "tasks": {shot_key(k): v for k, v in scores.items()} if several else next(iter(scores.values())),
            "lm_eval": {shot_key(k): v for k, v in kept.items()} if several else next(iter(kept.values()))}


def shot_key(shots: int) -> str:
    return f"{shots}-shot"


def markdown_table(columns: list[tuple[str, dict[str, dict[str, float]]]], note: str = "") -> str:
    """KIT-19-style table: one block per task, rows ACC / ACC_Norm / F1 (macro), a column per model (the
    evaluated one last), the best value of each row in bold unless all columns tie."""
    lines = ["| Benchmark Dataset | Metric | " + " | ".join(name for name, _ in columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    tasks = [t for t in TASKS if t in columns[-1][1]]  # the last column's tasks: a baseline may have more
    for task in tasks:
        first = True
        for key, label in METRICS:
            values = [scores.get(task, {}).get(key) for _, scores in columns]
            if all(v is None for v in values):
                continue
            lines.append(f"| {TASKS[task][0] if first else ''} | {label} | " + " | ".join(_cells(values)) + " |")
            first = False
    return "\n".join(lines) + ("\n\n" + note if note else "") + "\n"


def _cells(values: list[float | None]) -> list[str]:
    """Percent cells, the best in bold unless every column ties, "–" where a column has no value."""
    known = [v for v in values if v is not None]
    best = max(known) if len(set(known)) > 1 else None
    return ["–" if v is None else (f"**{v:.2%}**" if v == best else f"{v:.2%}") for v in values]


def suite_table(columns: list[tuple[str, dict[str, dict[str, float]]]], suite: str, rows: list[str]) -> str:
    """One lm-eval suite: a row per (task or group, metric), the suite's own aggregate first, then its direct
    children (KMMLU's kmmlu_stem / kmmlu_humss / kmmlu_applied_science / kmmlu_other), a column per model."""
    lines = [f"| {label_of(suite)} | Metric | " + " | ".join(name for name, _ in columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for row in rows:
        metrics = [m for _, scores in columns for m in scores.get(row, {})]
        for i, metric in enumerate(dict.fromkeys(metrics)):
            values = [scores.get(row, {}).get(metric) for _, scores in columns]
            lines.append(f"| {row if i == 0 else ''} | {metric} | " + " | ".join(_cells(values)) + " |")
    return "\n".join(lines) + "\n"


def shots_table(rows: list[tuple[str, dict[int, dict[str, dict[str, float]]]]], shots: list[int]) -> str:
    """KoQuality-style table: a row per model, a column per shot count, each cell the mean accuracy over the
    tasks the evaluated model (the last row) was scored on."""
    tasks = [t for t in TASKS if any(t in rows[-1][1].get(k, {}) for k in shots)]
    if not tasks:
        return ""
    lines = [f"Mean accuracy over {', '.join(tasks)}", "",
             "| Model | " + " | ".join(shot_key(k) for k in shots) + " |", "|---|" + "---|" * len(shots)]
    for name, by_shot in rows:
        cells = []
        for k in shots:
            accs = [by_shot.get(k, {}).get(t, {}).get("acc") for t in tasks]
            cells.append("–" if None in accs or not accs else f"{sum(accs) / len(accs):.4f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
