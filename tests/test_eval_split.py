"""An eval split: held out with the seed before sampling (no row in both sets) or read from eval sources; eval loss
while training, the best checkpoint kept, early stopping on a plateau; DPO logs eval reward accuracy and margins."""

from __future__ import annotations

import json
import runpy
import sys

import pytest
import torch
from safetensors.torch import load_file

from conftest import REPO, SAMPLE, base_config, run_sft_inprocess, write_config
from kotune.config import DatasetMixture, DatasetSource, build_config
from kotune.data.prompt_formats import install_template
from kotune.data.sft_dataset import build_sft_data
from kotune.errors import ConfigError, KotuneError
from kotune.models.loading import load_tokenizer

PREFERENCE = REPO / "src" / "kotune" / "data" / "sample" / "preference.jsonl"


@pytest.fixture
def tok(tiny_bases):
    t = load_tokenizer(str(tiny_bases["gpt_neox"]))
    install_template(t, "koquality")
    return t


def rows_of(ds) -> set[tuple[int, ...]]:
    return {tuple(ids) for ids in ds["input_ids"]}


def test_eval_rows_are_held_out_before_sampling(tok):
    n = sum(1 for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip())
    mixture = DatasetMixture(datasets=[DatasetSource(id=str(SAMPLE), format="instruction", weight=3.0)], seed=5)
    (train,), eval_ds, report = build_sft_data(mixture, tok, 512, eval_split_size=0.25)
    assert len(eval_ds) == round(0.25 * n) and len(train) == 3 * (n - len(eval_ds))  # weight 3: each row 3 times
    assert len(rows_of(train)) == n - len(eval_ds) and not rows_of(train) & rows_of(eval_ds)  # no row in both
    (again,), eval_again, _ = build_sft_data(mixture, tok, 512, eval_split_size=0.25)
    assert rows_of(eval_again) == rows_of(eval_ds) and again["input_ids"] == train["input_ids"]  # the seed fixes it
    assert report[str(SAMPLE)]["eval"]["used"] == len(eval_ds)
    (plain,), none, _ = build_sft_data(mixture, tok, 512)
    assert none is None and len(plain) == 3 * n


def test_an_eval_source_is_never_trained_on(tok, tmp_path):
    held = tmp_path / "valid.jsonl"
    held.write_text('{"instruction": "한국의 수도는?", "output": "서울입니다."}\n'
                    '{"instruction": "일본의 수도는?", "output": "도쿄입니다."}\n', encoding="utf-8")
    mixture = DatasetMixture(datasets=[DatasetSource(id=str(SAMPLE), format="instruction"),
                                       DatasetSource(id=str(held), format="instruction", eval=True)])
    (train,), eval_ds, report = build_sft_data(mixture, tok, 512)
    assert len(eval_ds) == 2 and not rows_of(train) & rows_of(eval_ds)
    assert report[str(held)]["used"] == 0 and report[str(held)]["eval"]["used"] == 2


def test_an_eval_split_too_large_or_empty_is_one_error(tok):
    mixture = DatasetMixture(datasets=[DatasetSource(id=str(SAMPLE), format="instruction")])
    with pytest.raises(KotuneError, match="leaving none to train on"):
        build_sft_data(mixture, tok, 512, eval_split_size=10_000)
    with pytest.raises(KotuneError, match="leaves no eval rows"):
        build_sft_data(mixture, tok, 512, eval_split_size=0.0001)


def test_eval_settings_are_checked_with_the_config(tmp_path, tiny_bases):
    raw = base_config(tiny_bases["gpt_neox"], tmp_path / "o")
    with pytest.raises(ConfigError, match="needs an eval split"):
        build_config({**raw, "eval_strategy": "steps"})
    with pytest.raises(ConfigError, match="early_stopping_patience needs load_best_model_at_end"):
        build_config({**raw, "eval_split_size": 0.1, "early_stopping_patience": 2})
    with pytest.raises(ConfigError, match="eval_split_size"):
        build_config({**raw, "eval_split_size": -0.5})
    cfg = build_config({**raw, "eval_split_size": 0.1})
    assert cfg.training.eval_strategy == "steps" and cfg.resolved["eval_strategy"] == "steps"  # kotune's default


def test_eval_loss_best_checkpoint_and_early_stopping(tmp_path, tiny_bases):
    """A threshold no improvement can pass makes every eval after the first a plateau, so the run stops at the second
    eval. Read with greater_is_better, the falling eval loss makes the first eval the best: the model saved at the
    end is that checkpoint's, not the last step's."""
    out = tmp_path / "out"
    cfg = base_config(tiny_bases["llama"], out, max_steps=20, eval_split_size=0.2, eval_steps=2, save_strategy="steps",
                      save_steps=2, load_best_model_at_end=True, greater_is_better=True, early_stopping_patience=1,
                      early_stopping_threshold=100.0)
    assert run_sft_inprocess(write_config(tmp_path / "c.yaml", cfg)) == 0
    state = json.loads((out / "trainer_state.json").read_text())
    evals = [h for h in state["log_history"] if "eval_loss" in h]
    assert state["global_step"] == 4 and [h["step"] for h in evals] == [2, 4]  # stopped early, not at 20
    assert evals[1]["eval_loss"] < evals[0]["eval_loss"]  # it learned; the "best" by this metric is the first
    assert state["best_model_checkpoint"].endswith("checkpoint-2") and state["best_metric"] == evals[0]["eval_loss"]
    best = load_file(out / "checkpoint-2" / "adapter_model.safetensors")
    last = load_file(out / "checkpoint-4" / "adapter_model.safetensors")
    final = load_file(out / "adapter_model.safetensors")
    assert all(torch.equal(best[k], final[k]) for k in best)  # the best checkpoint is what was saved
    assert not all(torch.equal(last[k], final[k]) for k in last)
    assert (out / "loss.png").is_file()
    report = json.loads((out / "data_report.json").read_text())
    assert report[str(SAMPLE)]["eval"]["used"] > 0
    health = [h for h in state["log_history"] if "eval_hangul_share" in h]  # Korean answer health at each eval
    assert [h["step"] for h in health] == [2, 4]
    for h in health:
        assert 0 <= h["eval_hangul_share"] <= 1
        assert abs(sum(h[f"eval_speech_{level}"] for level in ("합쇼체", "해요체", "반말", "other")) - 1) < 1e-3


def test_answer_health_metrics():
    from kotune.stages.answer_health import health_metrics

    metrics = health_metrics(["서울입니다.", "도쿄예요.", "The capital is Seoul.", "100도에서 끓어"])
    assert metrics["eval_speech_합쇼체"] == metrics["eval_speech_해요체"] == metrics["eval_speech_반말"] == 0.25
    assert metrics["eval_speech_other"] == 0.25 and metrics["eval_hangul_share"] == 0.75


def test_dpo_logs_eval_reward_accuracy_and_margins(tmp_path, tiny_bases):
    out = tmp_path / "out"
    cfg = base_config(tiny_bases["gpt_neox"], out, dataset_mixture={"datasets": [{"id": str(PREFERENCE),
                                                                                   "format": "preference"}]},
                      max_length=128, max_prompt_length=64, beta=0.1, max_steps=4, eval_split_size=0.25, eval_steps=2)
    path = write_config(tmp_path / "c.yaml", cfg)
    argv = sys.argv
    sys.argv = [str(REPO / "train" / "dpo.py"), str(path)]
    try:
        runpy.run_path(str(REPO / "train" / "dpo.py"), run_name="__main__")
    except SystemExit as exit_:
        assert not exit_.code
    finally:
        sys.argv = argv
    evals = [h for h in json.loads((out / "trainer_state.json").read_text())["log_history"] if "eval_loss" in h]
    assert [h["step"] for h in evals] == [2, 4]
    assert all("eval_rewards/accuracies" in h and "eval_rewards/margins" in h for h in evals)
