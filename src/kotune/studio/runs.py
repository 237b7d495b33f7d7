"""Runs, merges and exports started from the page: subprocesses with the CLI's own argv, their state in files.

A job is a folder under `.kotune-studio/jobs/`: job.json (argv, pid, status, exit code) and log.txt (stdout and
stderr). The page reads them back, so a reload, or a new studio in the same folder, shows the same state. The loss
curve comes from what the run prints (the Trainer's log dicts) while it trains, and from trainer_state.json when it
has one. Stop sends SIGTERM, on which kotune saves a checkpoint and stops, as it does for `kill` or Slurm.
"""

from __future__ import annotations

import ast
import json
import os
import re
import secrets
import signal
import subprocess
import threading
import time
from pathlib import Path

from kotune.errors import KotuneError
from kotune.studio.paths import STATE_DIR, Workspace

LOG_DICT = re.compile(r"\{'[^{}]*\}")
BAR = re.compile(r"^\s*\d+%\|[^|]*\|\s*(\d+)/(\d+) \[([\d:]+)<([\d:?]+)")  # the Trainer's bar: no label
ERROR = re.compile(r"^(kotune: error: .*|[A-Za-z_.]*(Error|Exception): .*)$")
METRICS = ("loss", "eval_loss", "eval_hangul_share", "eval_speech_합쇼체", "eval_speech_해요체", "eval_speech_반말",
           "learning_rate", "train_loss")


def _seconds(clock: str) -> int | None:
    if "?" in clock:
        return None
    parts = [int(p) for p in clock.split(":")]
    return sum(p * 60 ** i for i, p in enumerate(reversed(parts)))


def parse_log(text: str, logging_steps: int | None = None) -> dict:
    """What a run has printed so far: its metric points, the progress and the time left, and its one-line error if
    it failed. The Trainer logs training metrics every `logging_steps`, so the n-th training point is at step
    n × logging_steps (evaluations follow the training point of their step); without it, at the step the progress
    bar last showed, which lags when steps are faster than tqdm redraws (every 0.1 s)."""
    points, step, progress, trained = [], 0, None, 0
    for segment in re.split(r"[\r\n]", text):
        bar = BAR.match(segment)
        if bar and "\x1b[A" not in segment and "[A" not in segment:  # eval bars are drawn one line up
            step, total = int(bar.group(1)), int(bar.group(2))
            progress = {"step": step, "total": total, "elapsed_s": _seconds(bar.group(3)),
                        "eta_s": _seconds(bar.group(4))}
        for found in LOG_DICT.findall(segment):
            try:
                values = ast.literal_eval(found)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                continue
            if not isinstance(values, dict):
                continue
            point = {k: float(v) for k, v in values.items() if k in METRICS and _number(v)}
            if point and logging_steps:
                trained += "loss" in point
                points.append({"step": trained * logging_steps, **point})
            elif point:
                points.append({"step": step, **point})
    errors = [line.strip() for line in text.splitlines() if ERROR.match(line.strip())]
    kotune_errors = [e for e in errors if e.startswith("kotune: error:")]
    error = (kotune_errors or errors or [None])[-1]
    if error and error.startswith("kotune: error:") and error.rstrip().endswith(":"):  # a ConfigError: its list
        lines = text.splitlines()
        at = max(i for i, line in enumerate(lines) if line.strip() == error)
        error = " ".join([error] + [line.strip() for line in lines[at + 1:at + 4] if line.startswith("  - ")])
    return {"points": points, "progress": progress, "error": error}


def _number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def state_points(output_dir: Path) -> list[dict]:
    """Metric points from the run's trainer_state.json (the finished run's, else the newest checkpoint's)."""
    candidates = [output_dir / "trainer_state.json"] + sorted(output_dir.glob("checkpoint-*/trainer_state.json"),
                                                             key=lambda p: p.stat().st_mtime, reverse=True)
    for path in candidates:
        if path.is_file():
            try:
                history = json.loads(path.read_text(encoding="utf-8")).get("log_history", [])
            except (OSError, json.JSONDecodeError):
                continue
            return [{"step": h.get("step", 0), **{k: float(v) for k, v in h.items() if k in METRICS and _number(v)}}
                    for h in history if any(k in METRICS for k in h)]
    return []


class Jobs:
    """The studio's subprocesses, one folder each; their state survives the page and the server."""

    def __init__(self, workspace: Workspace):
        self.ws = workspace
        self.procs: dict[str, subprocess.Popen] = {}

    def folder(self, job_id: str) -> Path:
        if not re.fullmatch(r"[\w-]+", job_id or ""):
            raise KotuneError(f"no job '{job_id}'")
        path = self.ws.root / STATE_DIR / "jobs" / job_id
        if not (path / "job.json").is_file():
            raise KotuneError(f"no job '{job_id}'")
        return path

    def start(self, kind: str, argv: list[str], **meta) -> dict:
        """Start `argv` (a list: never shell text) in the workspace, stdout and stderr into the job's log."""
        job_id = time.strftime("%Y%m%d-%H%M%S") + f"-{kind}-{secrets.token_hex(2)}"
        folder = self.ws.state_dir("jobs", job_id)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(folder / "log.txt", "wb") as log:
            proc = subprocess.Popen(argv, cwd=self.ws.root, stdout=log, stderr=subprocess.STDOUT, env=env,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs[job_id] = proc
        job = {"id": job_id, "kind": kind, "argv": argv, "pid": proc.pid, "started": time.time(),
               "status": "running", **meta}
        self._write(folder, job)
        threading.Thread(target=self._wait, args=(job_id, proc), daemon=True).start()
        return job

    def _wait(self, job_id: str, proc: subprocess.Popen) -> None:
        code = proc.wait()
        folder = self.ws.root / STATE_DIR / "jobs" / job_id
        job = self._read(folder)
        job.update(returncode=code, ended=time.time(),
                   status="stopped" if job.get("stopping") else "finished" if code == 0 else "failed")
        self._write(folder, job)

    def stop(self, job_id: str) -> dict:
        """SIGTERM to the run's process: kotune saves a checkpoint after the current step and exits."""
        folder = self.folder(job_id)
        job = self._read(folder)
        if job["status"] == "running" and self._alive(job):
            job["stopping"] = True
            self._write(folder, job)
            os.kill(job["pid"], signal.SIGTERM)
        return job

    def get(self, job_id: str, since: int = 0) -> dict:
        """The job, its new log text from byte `since`, and what the log says (points, progress, error)."""
        folder = self.folder(job_id)
        job = self._read(folder)
        raw = (folder / "log.txt").read_bytes()
        text = raw.decode("utf-8", errors="replace")
        steps = job.get("logging_steps")
        parsed = parse_log(text, steps if isinstance(steps, int) and steps >= 1 else None)
        if job["status"] == "running" and not self._alive(job):  # started by an earlier studio; ended since
            finished = job.get("output_dir") and (self.ws.root / job["output_dir"] / "trainer_state.json").is_file()
            job["status"] = "failed" if parsed["error"] else "finished" if finished else "lost"
            self._write(folder, job)
        if job.get("output_dir"):
            out = self.ws.root / job["output_dir"]
            from_state = state_points(out) if job["status"] != "running" else []
            parsed["points"] = from_state or parsed["points"]
        return {**job, **parsed, "log": raw[since:].decode("utf-8", errors="replace"), "log_size": len(raw),
                "error": parsed["error"] if job["status"] == "failed" else None}

    def list(self) -> list[dict]:
        root = self.ws.root / STATE_DIR / "jobs"
        jobs = [self._read(p.parent) for p in root.glob("*/job.json")] if root.is_dir() else []
        return sorted(jobs, key=lambda j: j.get("started", 0), reverse=True)

    def _alive(self, job: dict) -> bool:
        proc = self.procs.get(job["id"])
        if proc is not None:
            return proc.poll() is None
        try:  # the same process, not another one that got its pid since
            cmdline = Path(f"/proc/{job['pid']}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return [part.decode(errors="replace") for part in cmdline if part] == job["argv"]

    @staticmethod
    def _read(folder: Path) -> dict:
        return json.loads((folder / "job.json").read_text(encoding="utf-8"))

    @staticmethod
    def _write(folder: Path, job: dict) -> None:
        tmp = folder / "job.json.tmp"
        tmp.write_text(json.dumps(job, ensure_ascii=False, indent=1), encoding="utf-8")
        tmp.replace(folder / "job.json")


def past_runs(workspace: Workspace, depth: int = 4) -> list[dict]:
    """Output dirs under the workspace (a run_info.json marks one), newest first, with their last metrics."""
    found = []
    for info in (f for f in workspace.files(depth) if f.name == "run_info.json"):
        rel = info.parent.relative_to(workspace.root)
        points = state_points(info.parent)
        last = {}
        for point in points:
            last.update({k: v for k, v in point.items()})
        found.append({"output_dir": rel.as_posix(), "mtime": info.stat().st_mtime, "metrics": last,
                      "finished": (info.parent / "trainer_state.json").is_file(),
                      "adapter": (info.parent / "adapter_config.json").is_file()})
    return sorted(found, key=lambda r: r["mtime"], reverse=True)
