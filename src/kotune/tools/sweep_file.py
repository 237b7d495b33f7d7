"""Sweep files: one base config, a grid or a list of overrides; every run's config checked before any starts.

A sweep file:

    base: configs/sft/polyglot-ko-tiny-demo.yaml   # the config every run starts from (path from the cwd)
    kind: sft                                      # the stage: a name in kotune.stages.registry (sft, dpo, ...)
    output_dir: runs/sweeps/demo-lr                # runs go in OUTPUT_DIR/<name from the overrides>
    launcher: python                               # python | accelerate | deepspeed | launch.sh
    launcher_args: []                              # e.g. [--gpus, 4, --zero, 3] for launch.sh
    overrides: {num_train_epochs: 3}               # applied to every run
    grid: {learning_rate: [1.0e-3, 1.0e-2], lora_r: [8, 16]}   # every combination ...
    runs: [{learning_rate: 1.0e-3}, {lora_r: 32}]             # ... and/or an explicit list
    eval: {tasks: [kobest_copa], num_fewshot: 0}   # optional: `kotune eval` after each run
"""

from __future__ import annotations

import inspect
import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kotune.config.loading import parse_overrides, read_yaml, set_dotted
from kotune.config.validation import build_config, suggest
from kotune.errors import ConfigError, KotuneError
from kotune.eval.run import evaluate_run, shot_counts
from kotune.eval.tasks import resolve_tasks
from kotune.stages.registry import STAGES

SWEEP_KEYS = {"base", "kind", "output_dir", "launcher", "launcher_args", "overrides", "grid", "runs", "eval"}
LAUNCHERS = ("python", "accelerate", "deepspeed", "launch.sh")
# Short forms for run-dir names; any other key is named by its last dotted part.
ABBREVIATIONS = {
    "learning_rate": "lr", "lora_r": "r", "lora_alpha": "alpha", "lora_dropout": "drop", "num_train_epochs": "ep",
    "max_steps": "steps", "per_device_train_batch_size": "bs", "gradient_accumulation_steps": "ga",
    "max_length": "len", "warmup_steps": "warmup", "weight_decay": "wd", "lr_scheduler_type": "sched",
    "packing": "pack", "beta": "beta", "seed": "seed", "model_name_or_path": "model", "prompt_format": "fmt",
}

@dataclass
class Sweep:
    path: Path
    base: Path
    stage: str  # the sweep file's `kind`
    output_dir: Path
    launcher: str
    launcher_args: list[str]
    common: dict[str, Any]
    runs: list[tuple[str, dict[str, Any]]]  # (name, overrides of this run)
    eval: dict[str, Any] | None = None


def load_sweep(path: str | Path, cli_overrides: list[str] | None = None, check_paths: bool = True) -> Sweep:
    """Parse and check a sweep file; every run's config is validated before any run starts. `check_paths=False`
    checks a shipped sweep on a machine without its model dirs (tests)."""
    path = Path(path)
    raw = read_yaml(str(path))
    problems = []
    for key in raw:
        if key not in SWEEP_KEYS:
            problems.append(f"{key}: unknown sweep key{suggest(key, SWEEP_KEYS)}")
    stage = raw.get("kind", "sft")
    if stage not in STAGES:
        problems.append(f"kind: must be a stage ({', '.join(STAGES)}), not {stage!r}{suggest(str(stage), STAGES)}")
    launcher = raw.get("launcher", "python")
    if launcher not in LAUNCHERS:
        problems.append(f"launcher: must be one of {', '.join(LAUNCHERS)}, not {launcher!r}")
    launcher_args = raw.get("launcher_args", []) or []
    if not isinstance(launcher_args, list):
        problems.append("launcher_args: must be a list, e.g. [--gpus, 4, --zero, 3]")
    base = raw.get("base")
    base_path = _find_base(base, path) if isinstance(base, str) else None
    if not isinstance(base, str):
        problems.append("base: give the config every run starts from, e.g. base: configs/sft/my-run.yaml")
    elif base_path is None:
        problems.append(f"base: config file '{base}' not found (paths are read from the current directory)")
    common = raw.get("overrides") or {}
    grid = raw.get("grid") or {}
    listed = raw.get("runs") or []
    if not isinstance(common, dict):
        problems.append("overrides: must be a mapping of key: value applied to every run")
    if not isinstance(grid, dict) or any(not isinstance(v, list) or not v for v in grid.values()):
        problems.append("grid: must map each key to a non-empty list of values, e.g. learning_rate: [1.0e-4, 2.0e-4]")
    if not isinstance(listed, list) or any(not isinstance(r, dict) for r in listed):
        problems.append("runs: must be a list of mappings, e.g. runs: [{learning_rate: 1.0e-4}, {lora_r: 32}]")
    if not grid and not listed:
        problems.append("give `grid:` (every combination of values) or `runs:` (a list of overrides), or both")
    evaluation = raw.get("eval")
    if evaluation is not None and not isinstance(evaluation, dict):
        problems.append("eval: must be a mapping, e.g. eval: {tasks: [kobest_copa], num_fewshot: 0}")
    elif evaluation:
        problems += _eval_problems(evaluation)
    if problems:
        raise ConfigError(problems, str(path))

    common = {**common, **parse_overrides(cli_overrides or [])}
    if "output_dir" in common:
        raise ConfigError(["output_dir: each run's output dir is set by the sweep; set the sweep's output_dir "
                           "instead"], str(path))
    variants = expand(grid, listed)
    names = [run_name(v) for v in variants]
    if len(set(names)) != len(names):
        names = [f"{i:02d}-{n}" for i, n in enumerate(names, 1)]
    output_dir = Path(raw.get("output_dir") or Path("runs") / "sweeps" / path.stem)
    sweep = Sweep(path=path, base=base_path, stage=stage, output_dir=output_dir, launcher=launcher,
                  launcher_args=[str(a) for a in launcher_args], common=common, runs=list(zip(names, variants)),
                  eval=evaluation)
    for name, overrides in sweep.runs:
        _validate_run(sweep, name, overrides, check_paths)
    return sweep


def _eval_problems(evaluation: dict) -> list[str]:
    """The eval block's keys are evaluate_run's parameters (the flags of `kotune eval`)."""
    valid = set(inspect.signature(evaluate_run).parameters) - {"run_dir", "out_dir"}
    problems = [f"eval.{key}: unknown eval key{suggest(key, valid)} (valid: {', '.join(sorted(valid))})"
                for key in evaluation if key not in valid]
    checks = {"tasks": resolve_tasks, "num_fewshot": shot_counts}  # said now, not after the first run trains
    for key, check in checks.items():
        if key in evaluation:
            try:
                check(evaluation[key])
            except KotuneError as err:
                problems.append(f"eval.{key}: {err}")
    return problems


def _find_base(base: str, sweep_path: Path) -> Path | None:
    for candidate in (Path(base), sweep_path.parent / base):
        if candidate.is_file():
            return candidate
    return None


def expand(grid: dict[str, list], listed: list[dict]) -> list[dict[str, Any]]:
    """Every combination of the grid (in key order), then the listed runs; a grid with a list gives each listed
    run crossed with the grid."""
    combos = [dict(zip(grid, values)) for values in itertools.product(*grid.values())] if grid else [{}]
    if not listed:
        return combos
    return [{**item, **combo} for item in listed for combo in combos]


def run_name(overrides: dict[str, Any]) -> str:
    """A readable, filesystem-safe dir name: {learning_rate: 0.001, lora_r: 8} → 'lr0.001_r8'."""
    if not overrides:
        return "base"
    parts = []
    for key, value in overrides.items():
        short = ABBREVIATIONS.get(key, key.split(".")[-1])
        parts.append(f"{short}{_format_value(value)}")
    return re.sub(r"[^A-Za-z0-9._=+-]+", "-", "_".join(parts)).strip("-")


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return re.sub(r"e([+-])0*(\d)", r"e\1\2", f"{value:g}")
    if isinstance(value, str):
        return Path(value).name if "/" in value else value
    if isinstance(value, (list, tuple)):
        return "+".join(_format_value(v) for v in value)
    if isinstance(value, dict):
        return "+".join(f"{k}{_format_value(v)}" for k, v in value.items())
    return str(value)


def _validate_run(sweep: Sweep, name: str, overrides: dict[str, Any], check_paths: bool = True) -> None:
    """Build the run's config now, so a typo in the grid fails before hours of other runs."""
    raw = read_yaml(str(sweep.base))
    for key, value in {**sweep.common, **overrides, "output_dir": str(sweep.output_dir / name)}.items():
        set_dotted(raw, key, value)
    try:
        build_config(raw, stage=sweep.stage, source=f"{sweep.path} (run {name})", check_paths=check_paths)
    except ConfigError as err:
        raise KotuneError(str(err)) from None
