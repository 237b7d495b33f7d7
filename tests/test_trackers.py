"""report_to for real: MLflow with a local file store and W&B offline, each read back with its own client; kotune's
config reaches both; a tracker whose client is missing is one config error."""

from __future__ import annotations

import importlib.util
import json

import pytest
import yaml
from conftest import SAMPLE, base_config, run_sft_inprocess, write_config

from kotune.config.loading import load_config
from kotune.errors import ConfigError


def tracked_run(tiny_bases, tmp_path, tracker: str):
    cfg = base_config(tiny_bases["gpt_neox"], tmp_path / "out", max_steps=3, report_to=[tracker],
                      prompt_format="komt")
    assert run_sft_inprocess(write_config(tmp_path / "c.yaml", cfg)) == 0
    return tmp_path / "out"


def test_mlflow_file_store_has_the_run_its_loss_history_and_kotune_config(tiny_bases, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    store = tmp_path / "mlruns"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"file:{store}")
    for unset in ("MLFLOW_EXPERIMENT_NAME", "MLFLOW_ALLOW_FILE_STORE"):  # kotune's defaults, undone after the test
        monkeypatch.setenv(unset, "")
    tracked_run(tiny_bases, tmp_path, "mlflow")
    client = MlflowClient(f"file:{store}")
    experiment = client.get_experiment_by_name("kotune")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in history] == [1, 2, 3] and all(m.value > 0 for m in history)
    params = run.data.params
    assert params["learning_rate"] == "0.01"  # transformers' TrainingArguments
    assert params["kotune/stage"] == "sft" and params["kotune/prompt_format"] == "komt"  # kotune's own fields
    assert params["kotune/dataset_mixture.datasets.0.id"] == str(SAMPLE)
    assert params["kotune/lora_r"] == "8" and params["kotune/dataset_mixture.seed"] == "1"


def test_wandb_offline_run_has_loss_and_kotune_config(tiny_bases, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for unset in ("WANDB_DIR", "WANDB_PROJECT"):  # kotune's defaults: output_dir, 'kotune'
        monkeypatch.setenv(unset, "")
    for where in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(where, str(tmp_path / where.lower()))
    out = tracked_run(tiny_bases, tmp_path, "wandb")
    (log,) = (out / "wandb").glob("offline-run-*/run-*.wandb")  # offline, the run is only this record log
    config, history = {}, []
    for record in wandb_records(log):
        kind = record.WhichOneof("record_type")
        if kind == "config":
            config.update({item.key: json.loads(item.value_json) for item in record.config.update})
        elif kind == "history":
            history.append({"/".join(item.nested_key) or item.key: json.loads(item.value_json)
                            for item in record.history.item})
    kotune = config["kotune"]
    assert kotune["stage"] == "sft" and kotune["prompt_format"] == "komt" and kotune["lora_r"] == 8
    assert kotune["dataset_mixture"]["datasets"][0]["id"] == str(SAMPLE)
    assert config["learning_rate"] == 0.01  # transformers' TrainingArguments
    losses = [(row["train/global_step"], row["train/loss"]) for row in history if "train/loss" in row]
    assert [step for step, _ in losses] == [1, 2, 3] and all(loss > 0 for _, loss in losses)


def wandb_records(path):
    """The protobuf Records of a .wandb file. wandb 0.31 ships no Python reader (its datastore moved into the Go
    wandb-core); the file is a LevelDB-style log: a 7-byte header, then 32 KiB blocks of chunks, each
    crc32 (4) + length (2) + type (1: full, 2: first, 3: middle, 4: last), never crossing a block."""
    import struct

    from wandb.proto import wandb_internal_pb2

    data, block, pos, pending = path.read_bytes(), 32768, 7, b""
    assert data[:7] == b":W&B\xe1\xbe\x00"
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # the rest of a block too short for a chunk header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def test_a_tracker_without_its_client_is_one_config_error(tiny_bases, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    path = write_config(tmp_path / "c.yaml", base_config(tiny_bases["gpt_neox"], tmp_path / "out",
                                                         report_to=["wandb", "mlfow"]))
    with pytest.raises(ConfigError) as err:
        load_config([str(path)])
    assert len(err.value.problems) == 2
    assert "report_to: 'wandb' needs its client, which is not installed: pip install wandb==0.31.0" in str(err.value)
    assert "report_to: unknown tracker 'mlfow'; did you mean 'mlflow'?" in str(err.value)
    assert not (tmp_path / "out").exists()


def test_tracker_pins_match_constraints():
    from conftest import REPO

    from kotune.stages.trackers import CLIENTS

    pins = dict(line.split("==") for line in (REPO / "constraints.txt").read_text().splitlines() if "==" in line)
    for name, package in (("wandb", "wandb"), ("mlflow", "mlflow-skinny"), ("tensorboard", "tensorboard")):
        assert CLIENTS[name][1] == f"pip install {package}=={pins[package]}"
