"""`kotune sweep SWEEP.yaml [--key=value ...]`: one base config, a grid or a list of overrides, one run after another.

The sweep file format is in `kotune.tools.sweep_file`.

Why it is built this way: every run goes through the same entry point and launcher a user would type (its exact
command is printed and logged), so a sweep run is an ordinary run dir. The sweep keeps its state in
OUTPUT_DIR/sweep.json; a rerun skips finished runs, resumes interrupted ones from their last complete checkpoint
(or restarts them when there is none), retries failed ones, and a failure never stops the others. At the end it
writes summary.md, summary.csv and summary.png.
"""

from __future__ import annotations

import argparse
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

from kotune.errors import KotuneError
from kotune.eval.run import evaluate_run
from kotune.stages.registry import get_stage
from kotune.tools.sweep_file import Sweep, load_sweep
from kotune.tools.sweep_report import cli_value, summarize, write_summary

STATE_FILE = "sweep.json"


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
# Running
# ---------------------------------------------------------------------------------------------------------------


def _repo_script(stage: str) -> Path:
    """The stage's entry script in this checkout (kotune is installed editable from it), else in the cwd."""
    entry = get_stage(stage).entry_script
    for root in (Path(__file__).resolve().parents[3], Path.cwd()):
        script = root / entry
        if script.is_file():
            return script
    raise KotuneError(f"{entry} not found: run the sweep from a kotune checkout")


def command(sweep: Sweep, name: str, overrides: dict[str, Any], restart: str | None) -> list[str]:
    """The exact command of one run. `restart`: None, 'resume' or 'overwrite' (an interrupted run)."""
    values = {**sweep.common, **overrides, "output_dir": str(sweep.output_dir / name)}
    if restart == "resume":
        values["resume_from_checkpoint"] = True
    elif restart == "overwrite":
        values["overwrite_output_dir"] = True
    flags = [f"--{k}={cli_value(v)}" for k, v in values.items()]
    script = _repo_script(sweep.stage)
    if sweep.launcher == "python":
        return [sys.executable, str(script), str(sweep.base), *sweep.launcher_args, *flags]
    if sweep.launcher == "accelerate":
        return ["accelerate", "launch", *sweep.launcher_args, str(script), str(sweep.base), *flags]
    if sweep.launcher == "deepspeed":
        return ["deepspeed", *sweep.launcher_args, str(script), str(sweep.base), *flags]
    return [str(script.parents[1] / "launch.sh"), sweep.stage, str(sweep.base), *sweep.launcher_args, "--", *flags]


def is_finished(run_dir: Path) -> bool:
    """Training ended and saved: the Trainer writes train_results.json after the final model."""
    return (run_dir / "train_results.json").is_file() and any(
        (run_dir / f).is_file() for f in ("adapter_model.safetensors", "model.safetensors",
                                           "model.safetensors.index.json"))


def _restart_mode(run_dir: Path) -> str | None:
    from kotune.stages.safety import complete_checkpoints  # imports transformers: only when a sweep runs

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
        env = {**os.environ, "KOTUNE_PYTHON": os.environ.get("KOTUNE_PYTHON", sys.executable)}  # launch.sh's python
        forward.child = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
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

