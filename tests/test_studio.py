"""kotune studio's API, through FastAPI's TestClient: the CLI's config messages, the YAML a run reads, path safety,
the token off localhost, and what the model learns on the tiny base (loss and no-loss tokens, the EOS marked)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml
from conftest import SAMPLE, base_config, subprocess_env, write_config

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from kotune.studio.app import create_app, main  # noqa: E402


@pytest.fixture
def studio(tmp_path, monkeypatch, tiny_bases):
    """A studio started in an empty folder holding the tiny base and a Korean data file, as a user would have it."""
    import shutil

    shutil.copytree(tiny_bases["gpt_neox"], tmp_path / "base")
    shutil.copy(SAMPLE, tmp_path / "data.jsonl")
    monkeypatch.chdir(tmp_path)
    return TestClient(create_app(tmp_path))


def form_config(**extra) -> dict:
    """What the page sends: relative paths inside the studio's folder."""
    cfg = base_config("base", "runs/out", dataset_mixture={"datasets": [{"id": "data.jsonl", "format": "instruction"}]})
    cfg.update(extra)
    return cfg


def test_validation_messages_are_the_clis(studio, tmp_path):
    bad = form_config(lerning_rate=1e-4, lora_dropout=1.5, max_steps=0)
    write_config(tmp_path / "bad.yaml", bad)
    cli = subprocess.run([sys.executable, "-m", "kotune.cli", "sft", "bad.yaml"], cwd=tmp_path, capture_output=True,
                         text=True, env=subprocess_env(), timeout=120)
    assert cli.returncode == 2
    answer = studio.post("/api/validate", json={"config": bad, "stage": "sft", "path": "bad.yaml"}).json()
    assert not answer["ok"] and len(answer["problems"]) == 3
    assert answer["message"] == cli.stderr.strip()
    assert "did you mean 'learning_rate'" in answer["message"]
    assert answer["commands"]["kotune"] == "kotune sft bad.yaml"
    assert answer["commands"]["launch"] == "./launch.sh sft bad.yaml"
    good = studio.post("/api/validate", json={"config": form_config(), "stage": "sft"}).json()
    assert good["ok"] and good["problems"] == [] and good["message"] == ""


def test_saved_yaml_is_the_hand_written_config(studio, tmp_path):
    hand = """
model_name_or_path: base
use_peft: true
lora_r: 8
lora_alpha: 16
dtype: float32
learning_rate: 1.0e-2
max_steps: 6
dataset_mixture:
  datasets:
    - {id: data.jsonl, format: instruction}
output_dir: runs/out
report_to: []
prompt_format: koquality
"""
    form = {"model_name_or_path": "base", "use_peft": True, "lora_r": 8, "lora_alpha": 16, "dtype": "float32",
            "learning_rate": 0.01, "max_steps": 6, "output_dir": "runs/out", "report_to": [],
            "prompt_format": "koquality",
            "dataset_mixture": {"datasets": [{"id": "data.jsonl", "format": "instruction"}]}}
    saved = studio.post("/api/config/save", json={"config": form, "stage": "sft", "path": "configs/mine.yaml"})
    assert saved.status_code == 200 and saved.json()["ok"], saved.json()
    text = (tmp_path / "configs" / "mine.yaml").read_text(encoding="utf-8")
    assert yaml.safe_load(text) == yaml.safe_load(hand)
    assert text == saved.json()["yaml"]  # the page showed exactly the file
    loaded = studio.post("/api/config/load", json={"path": "configs/mine.yaml"}).json()
    assert loaded["config"] == yaml.safe_load(hand)


def test_paths_outside_the_folder_are_refused(studio, tmp_path):
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "secret.yaml").write_text("model_name_or_path: x\n")
    os.symlink(outside, tmp_path / "link")
    for path in ("../secret.yaml", str(outside / "secret.yaml"), "link/secret.yaml", "/etc/passwd"):
        load = studio.post("/api/config/load", json={"path": path})
        assert load.status_code == 403 and "outside the studio's folder" in load.json()["error"], path
        save = studio.post("/api/config/save", json={"config": form_config(), "path": path})
        assert save.status_code == 403, path
    assert (outside / "secret.yaml").read_text() == "model_name_or_path: x\n"
    for key, value in (("output_dir", "../elsewhere"), ("model_name_or_path", str(outside))):
        checked = studio.post("/api/validate", json={"config": form_config(**{key: value})}).json()
        assert not checked["ok"] and checked["studio"][0].startswith(f"{key}: ")
    escaped = form_config(dataset_mixture={"datasets": [{"id": "link/data.jsonl", "format": "instruction"}]})
    refused = studio.post("/api/learn", json={"config": escaped})
    assert refused.status_code == 403 and "dataset_mixture.datasets[0].id" in refused.json()["error"]
    inside = studio.post("/api/config/save", json={"config": form_config(), "path": "ok.yaml"})
    assert inside.status_code == 200 and (tmp_path / "ok.yaml").is_file()


def test_a_token_is_required_off_localhost(tmp_path, monkeypatch, capsys):
    import uvicorn

    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, **kw: served.update(app=app, host=host))
    monkeypatch.chdir(tmp_path)
    assert main(["--host", "0.0.0.0", "--port", "7999"]) == 0
    printed = capsys.readouterr().out
    token = printed.split("?token=")[1].split()[0]
    client = TestClient(served["app"])
    assert client.get("/api/schema").status_code == 401
    assert client.get("/", headers={"x-kotune-token": "wrong"}).status_code == 401
    assert client.get("/api/schema", headers={"x-kotune-token": token}).status_code == 200
    page = client.get(f"/?token={token}")
    assert page.status_code == 200 and "kotune studio" in page.text
    assert client.get("/api/schema").status_code == 200  # the cookie set by the printed address
    main(["--port", "7999"])  # localhost: no token asked, but only localhost names (no DNS rebinding)
    assert "?token=" not in capsys.readouterr().out
    assert TestClient(served["app"], base_url="http://127.0.0.1:7999").get("/api/schema").status_code == 200
    assert TestClient(served["app"], base_url="http://localhost:7999").get("/api/schema").status_code == 200
    assert TestClient(served["app"], base_url="http://evil.example:7999").get("/api/schema").status_code == 403


def test_missing_ui_extra_is_one_clear_error(monkeypatch):
    from kotune.errors import KotuneError

    monkeypatch.setitem(sys.modules, "uvicorn", None)
    with pytest.raises(KotuneError, match=r"pip install kotune\[ui\]"):
        main([])


def test_language_follows_the_browser(studio):
    ko = studio.get("/api/i18n", headers={"accept-language": "ko-KR,ko;q=0.9,en;q=0.8"}).json()
    assert ko["lang"] == "ko" and ko["strings"]["start"] == "학습 시작"
    en = studio.get("/api/i18n", headers={"accept-language": "en-US,en;q=0.9"}).json()
    assert en["lang"] == "en" and en["strings"]["start"] == "Start training"
    assert studio.get("/api/i18n?lang=ko", headers={"accept-language": "en"}).json()["lang"] == "ko"
    assert set(ko["strings"]) == set(en["strings"])


def test_what_the_model_learns(studio):
    """The first rows as the run encodes them: the question is context, the answer and its EOS are trained."""
    from transformers import AutoTokenizer

    answer = studio.post("/api/learn", json={"config": form_config(prompt_format="koquality"), "rows": 3})
    assert answer.status_code == 200, answer.text
    learned = answer.json()
    assert len(learned["examples"]) == 3
    tokenizer = AutoTokenizer.from_pretrained("base")
    for example in learned["examples"]:
        spans = example["spans"]
        text = "".join(s["text"] for s in spans)
        assert text.startswith("### 질문: ") and "### 답변: " in text
        first_loss = next(i for i, s in enumerate(spans) if s["loss"])
        assert not any(s["loss"] for s in spans[:first_loss]) and all(s["loss"] for s in spans[first_loss:])
        assert "".join(s["text"] for s in spans[:first_loss]).endswith("### 답변: ")
        assert spans[-1]["eot"] and spans[-1]["ids"] == [tokenizer.eos_token_id] and spans[-1]["loss"]
        assert sum(len(s["ids"]) for s in spans if s["loss"]) == example["trained"]
    assert learned["tokens_per_hangul_syllable"] > 0
    assert learned["eot_tokens"] == [tokenizer.eos_token]
    assert "tokens per Hangul syllable" in learned["text"]


def test_live_points_sit_at_their_steps_when_the_bar_lags():
    """tqdm redraws at most every 0.1 s, so with fast steps the bar printed before a log line can be a step or two
    behind: the Trainer's own schedule (every logging_steps) places the points, evaluations at their step."""
    from kotune.studio.runs import parse_log

    log = ("  0%|          | 0/40 [00:00<?, ?it/s]\n{'loss': '8.9', 'epoch': '0.1'}\n"
           "{'loss': '8.7', 'epoch': '0.2'}\n  5%|▌         | 2/40 [00:00<00:04,  9.1it/s]\n"
           "{'loss': '8.5', 'epoch': '0.3'}\n{'loss': '8.4', 'epoch': '0.4'}\n{'eval_loss': '8.6', 'epoch': '0.4'}\n")
    parsed = parse_log(log, logging_steps=1)
    assert [(p["step"], sorted(k for k in p if k != "step")) for p in parsed["points"]] == [
        (1, ["loss"]), (2, ["loss"]), (3, ["loss"]), (4, ["loss"]), (4, ["eval_loss"])]
    assert [p["step"] for p in parse_log(log)["points"]] == [0, 0, 2, 2, 2]  # the bar alone lags
    assert parsed["progress"]["step"] == 2 and parsed["progress"]["total"] == 40
