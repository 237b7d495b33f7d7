"""kotune studio end to end in a real browser: Debian's headless Chromium driven by selenium, against `kotune studio`
started in an empty folder. Builds a config for the tiny base in the form, sees the tokens the model learns, starts a
short run and watches the loss chart fill in (through a page reload), chats with the result, and checks that the
saved YAML is the hand-written one. Screenshots go to the test's folder (and, with KOTUNE_STUDIO_DOCS=1, docs/)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, SAMPLE, subprocess_env

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1400,1100")
HAND_WRITTEN = """
model_name_or_path: base
use_peft: true
prompt_format: koquality
dtype: float32
lora_r: 8
lora_alpha: 16
lora_dropout: 0.0
output_dir: runs/e2e
learning_rate: 0.01
max_steps: 40
per_device_train_batch_size: 4
max_length: 128
logging_steps: 1
eval_split_size: 0.1
save_strategy: "no"
bf16: false
gradient_checkpointing: false
seed: 7
report_to: []
eval_steps: 10
dataset_mixture:
  datasets:
    - {id: data.jsonl, format: instruction}
"""
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def browser(tmp_path):
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        pytest.skip("needs Debian's chromium and chromium-driver (`make browser`)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS + (f"--user-data-dir={tmp_path / 'chromium-profile'}",):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


@pytest.fixture
def studio(tmp_path):
    """`kotune studio` in a folder holding only a tiny Polyglot-shaped base and Korean instructions."""
    from kotune.testing.tiny import tiny_base

    work = tmp_path / "work"
    tiny_base("gpt_neox", work / "base", hidden=64, layers=2, seed=0, init_std=0.2)
    shutil.copy(SAMPLE, work / "data.jsonl")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "kotune.cli", "studio", "--port", str(port)], cwd=work,
                            env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}/", work
    proc.terminate()
    proc.wait(timeout=30)


def wait(driver, condition, timeout: float = 60, what: str = ""):
    end = time.time() + timeout
    while time.time() < end:
        try:
            value = condition(driver)
        except Exception:  # noqa: BLE001 - the element is not there yet
            value = None
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def shot(driver, tmp_path: Path, name: str) -> Path:
    driver.execute_script("window.scrollTo(0, 0)")
    time.sleep(0.3)
    path = tmp_path / f"studio-{name}.png"
    driver.save_screenshot(str(path))
    if os.environ.get("KOTUNE_STUDIO_DOCS") and name in ("config", "learn", "run"):  # the README's three
        shutil.copy(path, REPO / "docs" / f"studio-{name}.png")
    return path


def test_studio_end_to_end(browser, studio, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    url, work = studio
    d = browser
    d.get(url)
    by_id = d.find_element
    wait(d, lambda d: by_id(By.ID, "f-output_dir"), what="the form")
    assert by_id(By.CSS_SELECTOR, "[data-tab=run]").text == "4. Train and watch"
    by_id(By.ID, "lang-switch").click()  # the page in Korean
    wait(d, lambda d: by_id(By.CSS_SELECTOR, "[data-tab=run]").text == "4. 학습 실행", what="Korean")

    # 1. the config, typed into the form
    by_id(By.ID, "config-path").clear()
    by_id(By.ID, "config-path").send_keys("configs/e2e.yaml")
    by_id(By.ID, "f-model_name_or_path").send_keys("base")
    Select(by_id(By.ID, "method")).select_by_value("lora")
    by_id(By.ID, "src-id-0").send_keys("data.jsonl")
    Select(by_id(By.ID, "src-format-0")).select_by_value("instruction")
    hand = yaml.safe_load(HAND_WRITTEN)
    for key in ("prompt_format", "dtype", "save_strategy", "bf16", "gradient_checkpointing"):
        Select(by_id(By.ID, f"f-{key}")).select_by_value(str(hand[key]).lower() if isinstance(hand[key], bool)
                                                        else str(hand[key]))
    for key in ("lora_r", "lora_alpha", "lora_dropout", "output_dir", "learning_rate", "max_steps",
                "per_device_train_batch_size", "max_length", "logging_steps", "eval_split_size", "seed", "report_to"):
        by_id(By.ID, f"f-{key}").send_keys(str(hand[key]) if key != "report_to" else "[]")
    by_id(By.ID, "adv-key").send_keys("lerning_rate")  # a typo: the CLI's message, as you type
    by_id(By.ID, "adv-value").send_keys("1e-4")
    by_id(By.ID, "adv-add").click()
    wait(d, lambda d: "did you mean 'learning_rate'" in by_id(By.ID, "problems").text, what="the CLI's message")
    by_id(By.CSS_SELECTOR, "#advanced button").click()
    by_id(By.ID, "adv-key").send_keys("eval_steps")
    by_id(By.ID, "adv-value").send_keys(str(hand["eval_steps"]))
    by_id(By.ID, "adv-add").click()
    wait(d, lambda d: "설정에 문제가 없습니다" in by_id(By.ID, "problems").text, what="a valid config")
    by_id(By.ID, "config-save").click()
    wait(d, lambda d: (work / "configs" / "e2e.yaml").is_file(), what="the saved YAML")
    saved = (work / "configs" / "e2e.yaml").read_text(encoding="utf-8")
    assert yaml.safe_load(saved) == hand
    assert "kotune sft configs/e2e.yaml" in by_id(By.ID, "commands").text
    shot(d, tmp_path, "config")

    # 2. what the model learns
    by_id(By.CSS_SELECTOR, "[data-tab=learn]").click()
    by_id(By.ID, "learn-btn").click()
    wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#learn-examples .tok.eot"), timeout=120, what="tokens")
    examples = d.find_elements(By.CSS_SELECTOR, "#learn-examples .example")
    assert len(examples) == 6
    first = examples[0]
    assert first.find_elements(By.CSS_SELECTOR, ".tok.noloss") and first.find_elements(By.CSS_SELECTOR, ".tok.loss")
    assert first.find_elements(By.CSS_SELECTOR, ".tok")[-1].get_attribute("class") == "tok loss eot"
    assert "### 답변:" in first.text
    assert "한글 한 음절당 토큰 수" in by_id(By.ID, "learn-summary").text
    shot(d, tmp_path, "learn")

    by_id(By.CSS_SELECTOR, "[data-tab=fit]").click()
    by_id(By.ID, "fit-btn").click()
    wait(d, lambda d: "메모리가 충분합니다" in by_id(By.ID, "fit-words").text, what="the plan")

    # 3. a short run; the loss chart fills in while it trains, and after a reload
    by_id(By.CSS_SELECTOR, "[data-tab=run]").click()
    by_id(By.ID, "run-start").click()
    samples: list[tuple[str, int]] = []  # (status, loss points drawn), as the page showed them

    def sample(d) -> tuple[str, int]:
        status, n = d.execute_script(  # one read: the chart is redrawn every second
            "const line = document.querySelector('#loss-chart polyline.c0');"
            "return [document.getElementById('run-status').textContent,"
            " line ? Number(line.getAttribute('data-points')) : 0];")
        samples.append((status, n))
        return samples[-1]

    wait(d, lambda d: sample(d)[1] >= 1, timeout=180, what="the first loss points")
    seen = samples[-1][1]
    d.refresh()  # the same run, its log and its chart, read back from the server's files
    wait(d, lambda d: sample(d)[0] in ("학습 중", "끝났습니다") and samples[-1][1] >= seen, what="the run after a reload")
    deadline = time.time() + 300
    while sample(d)[0] == "학습 중" and time.time() < deadline:
        if samples[-1][1] >= 25 and not (tmp_path / "studio-run.png").exists():
            shot(d, tmp_path, "run")  # live, after two evals
        time.sleep(0.25)
    assert samples[-1] == ("끝났습니다", 40)
    assert any(status == "학습 중" and 0 < n < 40 for status, n in samples), samples  # it filled in live
    assert d.find_elements(By.CSS_SELECTOR, "#loss-chart polyline.c1")  # eval loss
    if not (tmp_path / "studio-run.png").exists():
        shot(d, tmp_path, "run")
    assert (work / "runs" / "e2e" / "adapter_model.safetensors").is_file()
    assert "runs/e2e" in by_id(By.ID, "past").text

    # 4. chat: base and tuned side by side; the tuned answer is `kotune chat`'s
    by_id(By.CSS_SELECTOR, "[data-tab=chat]").click()
    assert by_id(By.ID, "chat-run").get_attribute("value") == "runs/e2e"
    question = "새해 다짐을 두세 문장으로 적어 주세요."
    by_id(By.ID, "chat-q").send_keys(question)
    by_id(By.ID, "chat-send").click()
    wait(d, lambda d: by_id(By.ID, "chat-tuned").get_attribute("data-done") == "1", timeout=120, what="answers")
    tuned, base = by_id(By.ID, "chat-tuned").text, by_id(By.ID, "chat-base").text
    assert tuned and base and not tuned.startswith("오류")
    cli = subprocess.run([sys.executable, "-m", "kotune.cli", "chat", "runs/e2e", "--prompt", question,
                          "--max_new_tokens", "64"], cwd=work, env=subprocess_env(), capture_output=True, text=True,
                         timeout=120)
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.strip() == tuned.strip()
    shot(d, tmp_path, "chat")
