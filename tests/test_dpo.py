"""DPO on the real train/dpo.py: an honest preference experiment, the reference model choices, data handling."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import REPO, write_config
from helpers import PREFS, write_jsonl


def run_dpo(config_path, *overrides) -> int:
    from helpers import run_stage_script

    return run_stage_script("dpo", config_path, *overrides)


def dpo_config(model_dir, out, data, **extra):
    from helpers import preference_config

    return preference_config(model_dir, out, data, **{"beta": 0.1, **extra})


@pytest.fixture(scope="module")
def experiment(preference_sft):
    """DPO from the SFT model towards polite (and, as a control, casual) answers."""
    from helpers import train_both_ways
    from kotune.testing.preference import METHODS

    return {**preference_sft, **train_both_ways("dpo", preference_sft, "dpo", **METHODS["dpo"][1])}


def test_dpo_moves_held_out_preferences_and_the_control_moves_back(experiment):
    from helpers import measure_preference
    from kotune.inference.loading import load_for_inference

    ref = load_for_inference(experiment["sft"])
    held = experiment["held"]  # prompts DPO never saw (SFT saw them, in both styles)
    before = measure_preference(experiment["sft"], ref, held)
    after = measure_preference(experiment["dpo"], ref, held)
    control = measure_preference(experiment["swapped"], ref, held)
    assert before["margin"] == pytest.approx(0.0, abs=1e-6)
    # 1. reward accuracy and mean margin rise
    assert after["accuracy"] >= 0.75 and after["margin"] > 0.1, after
    # 2. greedy outputs shift to the chosen (polite) style
    assert after["polite"] >= before["polite"] + 0.3, (before, after)
    # 3. answers keep their content: mean best-match similarity to a reference answer stays >= 0.97 (one answer
    #    cut short, "100도에서 끓습니다" -> "100입니다", costs 0.013; plain sigmoid DPO cut 1-3 of 12 on CPUs with
    #    and without AVX512: 0.91 and 0.865)
    assert after["correct"] >= 0.97, (before, after)
    # 4. the swapped control moves the other way
    assert control["margin"] < -0.1 and control["accuracy"] <= 0.25, control
    assert control["polite"] <= before["polite"], (before, control)


def test_likelihood_displacement_is_watched_warned_and_drawn(experiment, tmp_path, caplog):
    """kotune scores a fixed probe of chosen training answers at every log. The shipped settings keep them as likely
    as at the start (no warning); TRL's plain sigmoid loss on the same pairs pushes them down while its margin
    rises, and kotune warns by name, records the figures in run_info.json and draws them in loss.png."""
    import logging

    from PIL import Image

    from kotune.testing.preference import PLAIN_DPO, fast_config, run_stage, write_yaml

    kept = json.loads((experiment["dpo"] / "run_info.json").read_text())["likelihood_displacement"]
    assert kept["probe_answers"] == 16 and kept["warned_at_step"] is None, kept
    assert kept["max_chosen_less_likely"] < 0.2 and kept["final_chosen_logp_change"] > 0, kept

    out = tmp_path / "plain"
    cfg = fast_config(experiment["sft"], out, experiment["root"] / "dpo.jsonl", "preference", max_length=128,
                      max_prompt_length=64, **PLAIN_DPO)
    with caplog.at_level(logging.WARNING, logger="kotune"):
        assert run_stage("dpo", write_yaml(tmp_path / "plain.yaml", cfg)) == 0
    pushed = json.loads((out / "run_info.json").read_text())["likelihood_displacement"]
    assert pushed["warned_at_step"] is not None and pushed["max_chosen_less_likely"] >= 0.2, pushed
    assert pushed["final_chosen_logp_change"] < kept["final_chosen_logp_change"], (pushed, kept)
    warnings = [r.getMessage() for r in caplog.records if "likelihood displacement" in r.getMessage()]
    assert len(warnings) == 1 and "loss_type: [sigmoid, sft]" in warnings[0], warnings
    logs = [h for h in json.loads((out / "trainer_state.json").read_text())["log_history"] if "loss" in h]
    assert logs and all("chosen_logp_change" in h and "chosen_less_likely" in h for h in logs)
    assert Image.open(out / "loss.png").size[1] > 500  # the likelihood panel under the loss panel


def test_dpo_output_is_a_reloadable_adapter_without_the_reference(experiment):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    out, sft = experiment["dpo"], experiment["sft"]
    assert not (out / "ref").exists()
    trained, start = load_file(out / "adapter_model.safetensors"), load_file(sft / "adapter_model.safetensors")
    assert trained.keys() == start.keys()
    assert any(not torch.equal(trained[k], start[k]) for k in trained)  # parameters changed
    base = json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"]
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), out)
    assert list(model.peft_config) == ["default"]
    assert (out / "chat_template.jinja").read_text() == (sft / "chat_template.jinja").read_text()  # same format
    state = json.loads((out / "trainer_state.json").read_text())
    first = next(h for h in state["log_history"] if "loss" in h)
    # the reference is the SFT adapter: at the first step policy and reference agree, so both implied rewards are 0
    assert first["rewards/chosen"] == pytest.approx(0.0, abs=1e-3)
    assert first["rewards/rejected"] == pytest.approx(0.0, abs=1e-3)


def test_prompt_ids_match_sft_inference(experiment):
    """DPO trains on exactly the prompt ids SFT inference sends."""
    from kotune.config import DatasetMixture, DatasetSource
    from kotune.data.preference import build_preference_data
    from kotune.models.loading import load_tokenizer
    from kotune.data.prompt_formats import prompt_ids

    tok = load_tokenizer(str(experiment["sft"]))
    data = experiment["root"] / "dpo.jsonl"
    ds, _, _ = build_preference_data(DatasetMixture(datasets=[DatasetSource(id=str(data), format="preference")]),
                                     tok, 128, 64)
    rows = {tuple(prompt_ids(tok, [{"role": "user", "content": json.loads(line)["prompt"]}]))
            for line in data.read_text(encoding="utf-8").splitlines()}
    assert {tuple(p) for p in ds["prompt_ids"]} == rows
    assert all(c[-1] == tok.eos_token_id and r[-1] == tok.eos_token_id for c, r in zip(ds["chosen_ids"],
                                                                                      ds["rejected_ids"]))


def test_preference_rows_dropped_by_reason(tmp_path, tiny_bases):
    from kotune.config import DatasetMixture, DatasetSource
    from kotune.errors import KotuneError
    from kotune.data.preference import build_preference_data
    from kotune.models.loading import load_tokenizer
    from kotune.data.prompt_formats import install_template

    tok = load_tokenizer(str(tiny_bases["gpt_neox"]))
    install_template(tok, "komt")
    good = PREFS[0]
    rows = [good,
            dict(good, chosen=""),
            dict(good, rejected=good["chosen"]),
            dict(good, prompt="아주 긴 질문입니다. " * 40),
            dict(good, chosen="아주 긴 답변입니다. " * 80),
            {"question": "메시지 형식은요?", "chosen": [{"role": "user", "content": "메시지 형식은요?"},
                                                   {"role": "assistant", "content": "지원합니다."}],
             "rejected": [{"role": "user", "content": "메시지 형식은요?"}, {"role": "assistant", "content": "지원해."}]}]
    path = write_jsonl(tmp_path / "p.jsonl", rows)
    # a rename onto a column the file also has is refused, not resolved by column order
    src = DatasetSource(id=str(path), format="preference", columns={"prompt": "question"})
    with pytest.raises(KotuneError, match="question.*prompt|prompt.*question"):
        build_preference_data(DatasetMixture(datasets=[src]), tok, max_length=256, max_prompt_length=64)
    src2 = DatasetSource(id=str(path), format="preference")
    ds2, _, report2 = build_preference_data(DatasetMixture(datasets=[src2]), tok, max_length=256, max_prompt_length=64)
    assert len(ds2) == 1
    assert report2[str(path)]["dropped"] == {"empty chosen": 1, "chosen equals rejected": 1,
                                             "prompt longer than max_prompt_length": 1, "missing prompt": 1,
                                             "longer than max_length": 1}


@pytest.mark.parametrize("variant", ["qlora4", "lora8", "full", "new_adapter_precompute"])
def test_dpo_variants_train(variant, tiny_bases, tmp_path):
    """4-bit and 8-bit QLoRA, full DPO against a frozen copy, and a new adapter with precomputed reference."""
    data = write_jsonl(tmp_path / "p.jsonl", PREFS[:16])
    extra = {"qlora4": {"load_in_4bit": True}, "lora8": {"load_in_8bit": True},
             "full": {"use_peft": False, "learning_rate": 1.0e-4},
             "new_adapter_precompute": {"precompute_ref_log_probs": True}}[variant]
    out = tmp_path / "out"
    cfg = dpo_config(tiny_bases["llama"], out, data, max_steps=3, **extra)
    assert run_dpo(write_config(tmp_path / "c.yaml", cfg)) == 0
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    losses = [h["loss"] for h in state["log_history"] if "loss" in h]
    assert all(map(torch.isfinite, torch.tensor(losses)))
    assert (out / ("model.safetensors" if variant == "full" else "adapter_model.safetensors")).is_file()


def test_dpo_refuses_non_preference_data(tmp_path, tiny_bases, capsys):
    from conftest import SAMPLE

    cfg = dpo_config(tiny_bases["gpt_neox"], tmp_path / "out", SAMPLE, max_steps=1)
    cfg["dataset_mixture"]["datasets"][0]["format"] = "instruction"
    assert run_dpo(write_config(tmp_path / "c.yaml", cfg)) == 2
    assert "DPO needs format: preference" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_dpo_with_accelerate_two_processes(experiment, tmp_path):
    """`accelerate launch train/dpo.py` from the SFT adapter, two CPU processes."""
    import subprocess
    import sys
    from pathlib import Path

    from conftest import subprocess_env

    out = tmp_path / "out"
    cfg = dpo_config(experiment["sft"], out, experiment["root"] / "dpo.jsonl", max_steps=2)
    accelerate = str(Path(sys.executable).with_name("accelerate"))
    proc = subprocess.run([accelerate, "launch", "--config_file", str(REPO / "configs/accelerate/cpu_2proc.yaml"),
                           str(REPO / "train" / "dpo.py"), str(write_config(tmp_path / "c.yaml", cfg))], env=subprocess_env(),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert json.loads((out / "run_info.json").read_text())["world_size"] == 2
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 2
    assert (out / "adapter_model.safetensors").is_file() and not (out / "ref").exists()
