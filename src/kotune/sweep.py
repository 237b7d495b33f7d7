"""`kotune sweep SWEEP.yaml [--key=value ...]`: one base config, a grid or a list of overrides, one run after another.

A sweep file:

    base: configs/sft/polyglot-ko-tiny-demo.yaml   # the config every run starts from (path from the cwd)
    kind: sft                                      # sft | dpo
    output_dir: runs/sweeps/demo-lr                # runs go in OUTPUT_DIR/<name from the overrides>
    launcher: python                               # python | accelerate | deepspeed | launch.sh
    launcher_args: []                              # e.g. [--gpus, 4, --zero, 3] for launch.sh
    overrides: {num_train_epochs: 3}               # applied to every run
    grid: {learning_rate: [1.0e-3, 1.0e-2], lora_r: [8, 16]}   # every combination ...
    runs: [{learning_rate: 1.0e-3}, {lora_r: 32}]             # ... and/or an explicit list
    eval: {tasks: [kobest_copa], num_fewshot: 0}   # optional: `kotune eval` after each run

Why it is built this way: every run goes through the same entry point and launcher a user would type (its exact
command is printed and logged), so a sweep run is an ordinary run dir. The sweep keeps its state in
OUTPUT_DIR/sweep.json; a rerun skips finished runs, resumes interrupted ones from their last complete checkpoint
(or restarts them when there is none), retries failed ones, and a failure never stops the others. At the end it
writes summary.md, summary.csv and summary.png.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kotune.config import ConfigError, parse_overrides, read_yaml
from kotune.errors import KotuneError
from kotune.sweep_report import cli_value, summarize, write_summary

SWEEP_KEYS = {"base", "kind", "output_dir", "launcher", "launcher_args", "overrides", "grid", "runs", "eval"}
LAUNCHERS = ("python", "accelerate", "deepspeed", "launch.sh")
# Short forms for run-dir names; any other key is named by its last dotted part.
ABBREVIATIONS = {
    "learning_rate": "lr", "lora_r": "r", "lora_alpha": "alpha", "lora_dropout": "drop", "num_train_epochs": "ep",
    "max_steps": "steps", "per_device_train_batch_size": "bs", "gradient_accumulation_steps": "ga",
    "max_length": "len", "warmup_steps": "warmup", "weight_decay": "wd", "lr_scheduler_type": "sched",
    "packing": "pack", "beta": "beta", "seed": "seed", "model_name_or_path": "model", "prompt_format": "fmt",
}
STATE_FILE = "sweep.json"


@dataclass
class Sweep:
    path: Path
    base: Path
    kind: str
    output_dir: Path
    launcher: str
    launcher_args: list[str]
    common: dict[str, Any]
    runs: list[tuple[str, dict[str, Any]]]  # (name, overrides of this run)
    eval: dict[str, Any] | None = None


@dataclass
class RunRecord:
    name: str
    overrides: dict[str, Any]
    status: str = "pending"  # pending | finished | failed
    exit_code: int | None = None
    wall_time_s: float | None = None
    attempts: int = 0
    command: list[str] = field(default_factory=list)
    error: str | None = None
    eval: dict[str, dict[str, float]] | None = None
    eval_error: str | None = None


# ---------------------------------------------------------------------------------------------------------------
# Reading the sweep file
# ---------------------------------------------------------------------------------------------------------------


def load_sweep(path: str | Path, cli_overrides: list[str] | None = None) -> Sweep:
    """Parse and check a sweep file; every run's config is validated before any run starts."""
    path = Path(path)
    raw = read_yaml(str(path))
    problems = []
    from kotune.config import _suggest

    for key in raw:
        if key not in SWEEP_KEYS:
            problems.append(f"{key}: unknown sweep key{_suggest(key, SWEEP_KEYS)}")
    kind = raw.get("kind", "sft")
    if kind not in ("sft", "dpo"):
        problems.append(f"kind: must be sft or dpo, not {kind!r}")
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
    sweep = Sweep(path=path, base=base_path, kind=kind, output_dir=output_dir, launcher=launcher,
                  launcher_args=[str(a) for a in launcher_args], common=common, runs=list(zip(names, variants)),
                  eval=evaluation)
    for name, overrides in sweep.runs:
        _validate_run(sweep, name, overrides)
    return sweep


def _eval_problems(evaluation: dict) -> list[str]:
    """The eval block's keys are evaluate_run's parameters (the flags of `kotune eval`)."""
    import inspect

    from kotune.config import _suggest
    from kotune.eval_tasks import resolve_tasks
    from kotune.evaluate import evaluate_run, shot_counts

    valid = set(inspect.signature(evaluate_run).parameters) - {"run_dir", "out_dir"}
    problems = [f"eval.{key}: unknown eval key{_suggest(key, valid)} (valid: {', '.join(sorted(valid))})"
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


def _validate_run(sweep: Sweep, name: str, overrides: dict[str, Any]) -> None:
    """Build the run's config now, so a typo in the grid fails before hours of other runs."""
    from kotune.config import _set_dotted, build_config

    raw = read_yaml(str(sweep.base))
    for key, value in {**sweep.common, **overrides, "output_dir": str(sweep.output_dir / name)}.items():
        _set_dotted(raw, key, value)
    raw.pop("deepspeed", None)  # a launcher concern; building it would start a process group here
    try:
        build_config(raw, kind=sweep.kind, source=f"{sweep.path} (run {name})")
    except ConfigError as err:
        raise KotuneError(str(err)) from None


# ---------------------------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------------------------


def _repo_script(kind: str) -> Path:
    """train/{kind}.py of this checkout (kotune is installed editable from it), else of the current directory."""
    for root in (Path(__file__).resolve().parents[2], Path.cwd()):
        script = root / "train" / f"{kind}.py"
        if script.is_file():
            return script
    raise KotuneError(f"train/{kind}.py not found: run the sweep from a kotune checkout")


def command(sweep: Sweep, name: str, overrides: dict[str, Any], restart: str | None) -> list[str]:
    """The exact command of one run. `restart`: None, 'resume' or 'overwrite' (an interrupted run)."""
    values = {**sweep.common, **overrides, "output_dir": str(sweep.output_dir / name)}
    if restart == "resume":
        values["resume_from_checkpoint"] = True
    elif restart == "overwrite":
        values["overwrite_output_dir"] = True
    flags = [f"--{k}={cli_value(v)}" for k, v in values.items()]
    script = _repo_script(sweep.kind)
    if sweep.launcher == "python":
        return [sys.executable, str(script), str(sweep.base), *sweep.launcher_args, *flags]
    if sweep.launcher == "accelerate":
        return ["accelerate", "launch", *sweep.launcher_args, str(script), str(sweep.base), *flags]
    if sweep.launcher == "deepspeed":
        return ["deepspeed", *sweep.launcher_args, str(script), str(sweep.base), *flags]
    return [str(script.parents[1] / "launch.sh"), sweep.kind, str(sweep.base), *sweep.launcher_args, "--", *flags]


def is_finished(run_dir: Path) -> bool:
    """Training ended and saved: the Trainer writes train_results.json after the final model."""
    return (run_dir / "train_results.json").is_file() and any(
        (run_dir / f).is_file() for f in ("adapter_model.safetensors", "model.safetensors",
                                           "model.safetensors.index.json"))


def _restart_mode(run_dir: Path) -> str | None:
    from kotune.safety import complete_checkpoints

    if not run_dir.exists() or not any(run_dir.iterdir()):
        return None
    return "resume" if complete_checkpoints(run_dir) else "overwrite"


def _load_state(sweep: Sweep) -> dict[str, RunRecord]:
    path = sweep.output_dir / STATE_FILE
    records: dict[str, RunRecord] = {}
    if path.is_file():
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            for item in saved.get("runs", []):
                records[item["name"]] = RunRecord(**item)
        except (ValueError, TypeError, KeyError):
            pass  # a state file cut by kill -9: the run dirs themselves say what is finished
    return {name: records.get(name) or RunRecord(name=name, overrides=overrides) for name, overrides in sweep.runs}


def _save_state(sweep: Sweep, records: dict[str, RunRecord]) -> None:
    """Atomic: a sweep killed mid-write leaves the previous state, never half a file."""
    path = sweep.output_dir / STATE_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"sweep": str(sweep.path), "base": str(sweep.base),
                               "runs": [vars(r) for r in records.values()]}, ensure_ascii=False, indent=2,
                              default=str), encoding="utf-8")
    os.replace(tmp, path)


class _ForwardSigterm:
    """SIGTERM to the sweep goes to the running training process (which checkpoints), then the sweep stops."""

    def __init__(self):
        self.child: subprocess.Popen | None = None
        self.received = False
        self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        self.received = True
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)

    def restore(self):
        signal.signal(signal.SIGTERM, self._previous)


def _last_error_line(log: Path) -> str:
    """The reason a run failed, from its log: kotune's one-message error, else the exception's last line."""
    try:
        lines = [ln.strip() for ln in log.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("kotune: error:"):
            return " ".join(lines[i:i + 4])[:400]
    for line in reversed(lines):
        if re.match(r"^[\w.]*(Error|Exception|Interrupt)\b", line) or "Killed" in line:
            return line[:400]
    return lines[-1][:400] if lines else ""


def run_sweep(sweep: Sweep) -> int:
    """Run what is left, then write the summary. Exit code 1 if any run failed."""
    sweep.output_dir.mkdir(parents=True, exist_ok=True)
    (sweep.output_dir / "logs").mkdir(exist_ok=True)
    records = _load_state(sweep)
    total = len(sweep.runs)
    forward = _ForwardSigterm()
    try:
        for i, (name, overrides) in enumerate(sweep.runs, 1):
            record, run_dir = records[name], sweep.output_dir / name
            if is_finished(run_dir):
                if record.status != "finished":
                    record.status, record.exit_code = "finished", 0
                print(f"[{i}/{total}] {name}: finished earlier, skipped", flush=True)
            else:
                _train_one(sweep, record, run_dir, overrides, forward, f"[{i}/{total}]")
                _save_state(sweep, records)
                if forward.received:
                    print("sweep: stopped by SIGTERM; rerun the same command to finish the rest", flush=True)
                    return 143
            if record.status == "finished" and sweep.eval and record.eval is None:
                _evaluate_one(sweep, record, run_dir, f"[{i}/{total}]")
            _save_state(sweep, records)
    finally:
        forward.restore()
    rows = summarize(sweep.output_dir, sweep.runs, records)
    write_summary(sweep.output_dir, rows, records)
    failed = [r for r in records.values() if r.status == "failed"]
    print(f"sweep: {total - len(failed)}/{total} runs finished; summary in {sweep.output_dir / 'summary.md'}")
    for r in failed:
        print(f"  FAILED {r.name} (exit {r.exit_code}): {r.error}  — log: {sweep.output_dir / 'logs' / (r.name + '.log')}")
    return 1 if failed else 0


def _train_one(sweep, record: RunRecord, run_dir: Path, overrides, forward, tag: str) -> None:
    restart = _restart_mode(run_dir)
    cmd = command(sweep, record.name, overrides, restart)
    note = {"resume": " (interrupted: resuming from its last checkpoint)",
            "overwrite": " (interrupted before a checkpoint: starting again)"}.get(restart, "")
    print(f"{tag} {record.name}{note}\n  $ {' '.join(cmd)}", flush=True)
    log = sweep.output_dir / "logs" / f"{record.name}.log"
    record.command, record.attempts = cmd, record.attempts + 1
    start = time.time()
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        forward.child = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        code = forward.child.wait()
        forward.child = None
    record.wall_time_s = round(time.time() - start, 1)
    record.exit_code = code
    if code == 0 and is_finished(run_dir):
        record.status, record.error = "finished", None
        print(f"  done in {record.wall_time_s:.0f} s", flush=True)
    else:
        record.status = "failed" if not forward.received else "pending"
        record.error = _last_error_line(log) or f"exit code {code}"
        print(f"  {record.status.upper()} (exit {code}): {record.error}\n  log: {log}", flush=True)


def _evaluate_one(sweep: Sweep, record: RunRecord, run_dir: Path, tag: str) -> None:
    print(f"{tag} {record.name}: evaluating ({', '.join(map(str, sweep.eval.get('tasks', [])))})", flush=True)
    try:
        from kotune.evaluate import evaluate_run

        record.eval = evaluate_run(str(run_dir), **sweep.eval)
        record.eval_error = None
    except Exception as err:  # an eval failure is reported in the table; the sweep goes on
        record.eval_error = f"{type(err).__name__}: {err}"[:300]
        print(f"  eval FAILED: {record.eval_error}", flush=True)


# ---------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="kotune sweep", description="Run every override set of a sweep file, one after another, then write "
        "summary.md, summary.csv and summary.png. Rerunning finishes only what is left.",
        epilog="Extra --key=value flags apply to every run (e.g. --max_steps=20 for a dry pass).")
    parser.add_argument("sweep", help="sweep YAML (see configs/sweeps/)")
    parser.add_argument("--dry-run", action="store_true", help="print each run's command and exit")
    args, rest = parser.parse_known_args(argv)
    sweep = load_sweep(args.sweep, rest)
    if args.dry_run:
        for name, overrides in sweep.runs:
            print(f"{name}: {' '.join(command(sweep, name, overrides, _restart_mode(sweep.output_dir / name)))}")
        return 0
    return run_sweep(sweep)

