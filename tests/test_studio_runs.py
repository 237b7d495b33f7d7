"""kotune studio's runs, started through its API as the page starts them: Stop is the CLI's SIGTERM (a checkpoint is
left), a failed run shows its one-line error, and the state is read back from files by a new studio."""

from __future__ import annotations

import shutil
import time

import pytest
from conftest import SAMPLE, base_config

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from kotune.studio.app import create_app  # noqa: E402

pytestmark = pytest.mark.slow


def wait_for(client, job_id: str, done, timeout: float = 240) -> dict:
    end = time.time() + timeout
    while time.time() < end:
        job = client.get(f"/api/jobs/{job_id}").json()
        if done(job):
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id}: timed out; last state {job['status']}, log:\n{job['log'][-3000:]}")


def test_stop_leaves_a_checkpoint_and_a_crash_its_error(tmp_path, monkeypatch, tiny_bases):
    shutil.copytree(tiny_bases["gpt_neox"], tmp_path / "base")
    shutil.copy(SAMPLE, tmp_path / "data.jsonl")
    monkeypatch.chdir(tmp_path)
    client = TestClient(create_app(tmp_path))
    cfg = base_config("base", "runs/long", dataset_mixture={"datasets": [{"id": "data.jsonl", "format": "instruction"}]},
                      max_steps=400)
    job = client.post("/api/runs", json={"config": cfg, "stage": "sft", "path": "long.yaml"}).json()
    assert job["argv"][-3:] == ["kotune.cli", "sft", "long.yaml"][-3:] and job["status"] == "running"
    running = wait_for(client, job["id"], lambda j: (j["progress"] or {}).get("step", 0) >= 3)
    assert running["progress"]["total"] == 400 and running["progress"]["eta_s"] is not None
    assert [p["step"] for p in running["points"] if "loss" in p][:3] == [1, 2, 3]
    other = TestClient(create_app(tmp_path))  # a second studio in the folder sees the run by its pid, and stops it
    assert other.get(f"/api/jobs/{job['id']}").json()["status"] == "running"
    assert other.post(f"/api/jobs/{job['id']}/stop").json()["stopping"] is True
    stopped = wait_for(client, job["id"], lambda j: j["status"] != "running", timeout=120)
    assert stopped["status"] == "stopped", stopped["log"][-2000:]
    assert list((tmp_path / "runs" / "long").glob("checkpoint-*/trainer_state.json"))
    assert "stopped by SIGTERM" in stopped["log"]

    # merge the checkpoint the stop left, as `kotune merge` does, as a job of its own
    checkpoint = sorted((tmp_path / "runs" / "long").glob("checkpoint-*"))[-1].relative_to(tmp_path).as_posix()
    merge = client.post("/api/merge", json={"run": checkpoint, "out": "runs/merged"}).json()
    assert merge["argv"][2:] == ["kotune.cli", "merge", checkpoint, "--out", "runs/merged"]
    merged = wait_for(client, merge["id"], lambda j: j["status"] != "running", timeout=120)
    assert merged["status"] == "finished", merged["log"][-2000:]
    assert (tmp_path / "runs" / "merged" / "config.json").is_file()
    assert client.post("/api/merge", json={"run": checkpoint, "out": "../merged"}).status_code == 403

    # the same output_dir again: the CLI refuses to overwrite it; the page shows that one line
    again = client.post("/api/runs", json={"config": cfg, "stage": "sft", "path": "long.yaml"}).json()
    failed = wait_for(client, again["id"], lambda j: j["status"] != "running", timeout=120)
    assert failed["status"] == "failed" and failed["returncode"] == 2
    assert failed["error"].startswith("kotune: error:") and "runs/long" in failed["error"]
    assert "\n" not in failed["error"]

    fresh = TestClient(create_app(tmp_path))  # a reload, or a new studio in the same folder
    jobs = fresh.get("/api/jobs").json()["jobs"]
    assert [(j["kind"], j["status"]) for j in jobs] == [("train", "failed"), ("merge", "finished"),
                                                        ("train", "stopped")]
    assert fresh.get(f"/api/jobs/{job['id']}").json()["points"]  # from the checkpoint's trainer_state.json
    past = fresh.get("/api/past").json()["runs"]
    assert [r["output_dir"] for r in past] == ["runs/long"] and "loss" in past[0]["metrics"]
    assert "runs/merged/config.json" not in fresh.get("/api/configs").json()["configs"]
