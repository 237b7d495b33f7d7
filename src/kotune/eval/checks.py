"""Checks of the `eval_*` config fields, run with the rest of the config: light (no network; lm-eval's task index
only when an lm-eval suite is to read eval_data_dir, ~2 s, so a missing file is said before hours of training)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kotune.errors import KotuneError
from kotune.eval.local_data import data_dir_problems
from kotune.eval.tasks import resolve_tasks
from kotune.stages.registry import get_stage, stages_with


def eval_config_problems(stage: str, tasks: Any, data_dir: Any, check_paths: bool = True, baseline: Any = None,
                         use_peft: bool = True) -> list[str]:
    """Config validation of the eval_* fields, before any training. No lm-eval import and no network: a Hub id
    as baseline is checked when the run starts (`kotune.eval.run.check_baseline`)."""
    if not get_stage(stage).evaluates_after:
        after = "/".join(s.upper() for s in stages_with("evaluates_after"))
        return [f"eval_tasks: evaluation runs at the end of {after} only; after {stage}, run "
                "`kotune eval OUTPUT_DIR`"]
    try:
        names = resolve_tasks(tasks if isinstance(tasks, (str, list)) else str(tasks))
    except KotuneError as err:
        return [f"eval_tasks: {err}"]
    problems = []
    if baseline == "base" and not use_peft:
        problems.append("eval_baseline: 'base' compares an adapter with its base; a full fine-tune has none "
                        "(give the base model's dir instead)")
    elif check_paths and isinstance(baseline, str) and baseline != "base" and not Path(baseline).expanduser().exists() \
            and (baseline.endswith(".json") or baseline.startswith((".", "/", "~")) or baseline.count("/") > 1):
        problems.append(f"eval_baseline: '{baseline}' does not exist")
    if check_paths and isinstance(data_dir, str):
        if not Path(data_dir).expanduser().is_dir():
            problems.append(f"eval_data_dir: '{data_dir}' does not exist")
        else:
            problems += [f"eval_data_dir: {p}" for p in data_dir_problems(names, Path(data_dir).expanduser())]
    return problems
