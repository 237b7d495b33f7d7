"""`kotune sweep`: readable run dirs, a summary table and plot, resumable after kill -9, failures reported."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO, base_config, subprocess_env, write_config
from kotune.cli import main as kotune
from kotune.tools.sweep import is_finished
from kotune.tools.sweep_file import expand, run_name

EVAL_DATA = REPO / "tests" / "fixtures" / "eval"
GRID = {"learning_rate": [1.0e-3, 1.0e-2], "lora_r": [4, 8]}
NAMES = ["lr0.001_r4", "lr0.001_r8", "lr0.01_r4", "lr0.01_r8"]


def _sweep_file(tmp_path: Path, model_dir: Path, **sweep) -> Path:
    cfg = base_config(model_dir, tmp_path / "unused", max_steps=16, save_strategy="steps", save_steps=4,
                      logging_steps=2)
    base = write_config(tmp_path / "base.yaml", cfg)
    spec = {"base": str(base), "kind": "sft", "output_dir": str(tmp_path / "sweep"), **sweep}
    return write_config(tmp_path / "sweep.yaml", spec)


def _start(sweep_file: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "kotune.cli", "sweep", str(sweep_file)], cwd=REPO,
                            env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def test_run_names_are_readable_and_grid_expands_in_order():
    assert [run_name(o) for o in expand(GRID, [])] == NAMES
    assert run_name({"lora_dropout": 0.05, "packing": True, "model_name_or_path": "EleutherAI/polyglot-ko-1.3b"}) \
        == "drop0.05_packtrue_modelpolyglot-ko-1.3b"
    assert run_name({"learning_rate": 2.0e-5}) == "lr2e-5"
    # a list crossed with a grid: each listed run with every grid point
    assert expand({"seed": [1, 2]}, [{"lora_r": 8}]) == [{"lora_r": 8, "seed": 1}, {"lora_r": 8, "seed": 2}]


@pytest.mark.slow  # multi-process, over 30 s on 2 cores: `make test-slow`
def test_killed_sweep_reruns_only_what_is_left(tmp_path, tiny_bases):
    sweep_file = _sweep_file(tmp_path, tiny_bases["gpt_neox"], grid=GRID)
    out = tmp_path / "sweep"
    proc = _start(sweep_file)
    # kill -9 the whole sweep (and its training process) once two runs are done and the third has a checkpoint
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        done = [n for n in NAMES if is_finished(out / n)]
        if len(done) >= 2 and list((out / NAMES[2]).glob("checkpoint-*/trainer_state.json")):
            break
        time.sleep(0.1)
    assert proc.poll() is None, "the sweep ended before it could be killed:\n" + proc.stdout.read()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    finished_first = [n for n in NAMES if is_finished(out / n)]
    assert finished_first == NAMES[:2]
    stamps = {n: (out / n / "train_results.json").stat().st_mtime_ns for n in finished_first}

    rerun = _start(sweep_file)
    log = rerun.communicate(timeout=600)[0]
    assert rerun.returncode == 0, log
    for name in NAMES[:2]:
        assert f"{name}: finished earlier, skipped" in log
        assert (out / name / "train_results.json").stat().st_mtime_ns == stamps[name], f"{name} was trained again"
    assert f"{NAMES[2]} (interrupted: resuming from its last checkpoint)" in log
    assert "--resume_from_checkpoint=true" in log
    for name in NAMES:
        assert is_finished(out / name)
        assert json.loads((out / name / "trainer_state.json").read_text())["global_step"] == 16
    resolved = yaml.safe_load((out / NAMES[3] / "kotune_config.yaml").read_text(encoding="utf-8"))
    assert resolved["lora_r"] == 8 and resolved["learning_rate"] == 1.0e-2

    state = json.loads((out / "sweep.json").read_text())
    assert [r["status"] for r in state["runs"]] == ["finished"] * 4
    rows = list(csv.DictReader((out / "summary.csv").open(encoding="utf-8")))
    assert [r["run"] for r in rows] == NAMES
    for row in rows:
        assert float(row["final_loss"]) > 0 and float(row["best_loss"]) <= float(row["final_loss"])
        assert float(row["useful_tokens_per_s"]) > 0 and row["steps"] == "16"
    assert rows[0]["learning_rate"] == "0.001" and rows[3]["lora_r"] == "8"
    table = (out / "summary.md").read_text(encoding="utf-8").splitlines()
    assert table[0].startswith("| run | learning_rate | lora_r | status | steps | final_loss | best_loss")
    assert len(table) == 2 + 4
    assert (out / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_failed_run_is_reported_and_the_rest_still_run_and_are_evaluated(tmp_path, tiny_bases):
    bad = tmp_path / "broken.jsonl"
    bad.write_text('{"instruction": "안녕하세요"\n{"이건": 아님}\n', encoding="utf-8")
    good = REPO / "src" / "kotune" / "data" / "sample" / "instructions.jsonl"
    sweep_file = _sweep_file(tmp_path, tiny_bases["gpt_neox"], overrides={"max_steps": 2, "save_strategy": "no"},
                             runs=[{"dataset_mixture.datasets.0.id": str(bad)},
                                   {"dataset_mixture.datasets.0.id": str(good)}],
                             eval={"tasks": ["kobest_copa"], "num_fewshot": [0, 1], "data_dir": str(EVAL_DATA),
                                   "limit": 4})
    proc = subprocess.run([sys.executable, "-m", "kotune.cli", "sweep", str(sweep_file)], cwd=REPO,
                          env=subprocess_env(), capture_output=True, text=True, timeout=600)
    out = tmp_path / "sweep"
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAILED idbroken.jsonl (exit 2)" in proc.stdout and "broken.jsonl" in proc.stdout
    assert is_finished(out / "idinstructions.jsonl")
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert "| idbroken.jsonl |" in summary and "| failed |" in summary and "Failures:" in summary
    assert "logs/idbroken.jsonl.log" in summary
    rows = {r["run"]: r for r in csv.DictReader((out / "summary.csv").open(encoding="utf-8"))}
    for shots in ("0-shot", "1-shot"):  # lm-eval ran on the finished run, at each shot count
        assert 0.0 <= float(rows["idinstructions.jsonl"][f"{shots}/kobest_copa/acc"]) <= 1.0
        assert rows["idbroken.jsonl"][f"{shots}/kobest_copa/acc"] == ""
    assert (out / "idinstructions.jsonl" / "eval" / "results.md").is_file()


@pytest.mark.parametrize("spec, expected", [
    ({"gird": {"learning_rate": [1e-4]}}, "gird: unknown sweep key: did you mean 'grid'?"),
    ({"grid": {"learning_rat": [1e-4]}}, "learning_rat: unknown key: did you mean 'learning_rate'?"),
    ({"grid": {"learning_rate": 1e-4}}, "grid: must map each key to a non-empty list"),
    ({"runs": [{"lora_r": 8}], "launcher": "torchrun"}, "launcher: must be one of python, accelerate"),
    ({"runs": [{"lora_r": 8}], "eval": {"task": ["kobest_copa"]}}, "eval.task: unknown eval key: did you mean 'tasks'?"),
    ({"runs": [{"lora_r": 8}], "eval": {"tasks": ["kobest_cop"]}}, "eval.tasks: unknown eval task 'kobest_cop'"),
    ({"runs": [{"lora_r": 8}], "eval": {"num_fewshot": [0, -5]}}, "eval.num_fewshot: num_fewshot must be a count"),
])
def test_bad_sweep_files_fail_before_any_run(tmp_path, tiny_bases, capsys, spec, expected):
    sweep_file = _sweep_file(tmp_path, tiny_bases["gpt_neox"], **spec)
    with pytest.raises(SystemExit) as exit_:
        kotune(["sweep", str(sweep_file)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
    assert not (tmp_path / "sweep").exists(), "nothing is written for a sweep that cannot start"


SHIPPED_SWEEPS = sorted((REPO / "configs" / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED_SWEEPS, ids=lambda p: p.name)
def test_shipped_sweep_files_validate(path, monkeypatch):
    """Every shipped sweep parses, names a registered stage, and every run's config binds and validates."""
    from kotune.stages.registry import STAGES
    from kotune.tools.sweep_file import load_sweep

    text = path.read_text(encoding="utf-8")
    assert text.startswith("#") and "kotune sweep" in "".join(text.splitlines()[:3])  # its launch command first
    monkeypatch.chdir(REPO)  # base paths are read from the current directory, as the header says
    sweep = load_sweep(path, check_paths=False)
    assert sweep.stage in STAGES and sweep.runs
    assert len({name for name, _ in sweep.runs}) == len(sweep.runs)
