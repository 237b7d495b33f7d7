"""ORPO, SimPO, KTO, the reward model and GRPO through their real entry points (train/<stage>.py), each from the
same SFT model as DPO (tests/conftest.py: preference_sft) on the bundled Korean preference sample: polite 합쇼체
answers chosen, casual 반말 rejected. Each preference method must move the held-out preference the right way while
a swapped-data control moves it the other way; the reward model must rank held-out pairs above chance; GRPO must
raise its reward. These experiments are marked slow (`make test-slow`); the default suite trains every stage from a
base with full weights and runs every demo recipe through `accelerate launch`."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import write_config
from helpers import (PREFS, measure_preference, preference_config, run_stage_script, train_both_ways, unpaired,
                     write_jsonl)

from kotune.testing.preference import METHODS  # noqa: E402  (each method's settings, shared with the bench)

PAIRED = [m for m in METHODS if m != "dpo"]  # DPO's experiment is in the default suite (tests/test_dpo.py)


@pytest.fixture(scope="module")
def reference(preference_sft):
    from kotune.inference.loading import load_for_inference

    return load_for_inference(preference_sft["sft"]), measure_preference(
        preference_sft["sft"], load_for_inference(preference_sft["sft"]), preference_sft["held"])


@pytest.mark.slow  # 1-2.5 min per method on 2 cores: `make test-slow`
@pytest.mark.parametrize("method", PAIRED)
def test_preference_shift_and_swapped_control(method, preference_sft, reference):
    ref, before = reference
    stage, extra = METHODS[method]
    fmt, to_rows = ("unpaired", unpaired) if stage == "kto" else ("preference", None)
    runs = train_both_ways(stage, preference_sft, method, fmt=fmt, to_rows=to_rows, **extra)
    held = preference_sft["held"]
    after = measure_preference(runs[method], ref, held)
    control = measure_preference(runs[f"swapped_{method}"], ref, held)
    # implied reward against the SFT model (log-prob margin, chosen minus rejected) rises on unseen prompts ...
    assert after["accuracy"] >= 0.75 and after["margin"] > 0.05, (stage, after)
    # ... and greedy answers turn polite, keeping their content (mean best-match similarity >= 0.97)
    assert after["polite"] >= before["polite"] + 0.3, (stage, before, after)
    assert after["correct"] >= 0.97, (stage, before, after)
    # the swapped control goes the other way
    assert control["margin"] < -0.05 and control["accuracy"] <= 0.25, (stage, control)
    assert control["polite"] <= before["polite"], (stage, before, control)
    # the output is the SFT adapter, trained on, reloadable in PEFT; no reference adapter left in it
    from peft import PeftConfig

    out = runs[method]
    assert list(json.loads((out / "adapter_config.json").read_text())) and not (out / "ref").exists()
    assert PeftConfig.from_pretrained(out).base_model_name_or_path == str(preference_sft["base"])
    report = json.loads((out / "data_report.json").read_text())
    if stage == "kto":
        (entry,) = report["sources"].values() if "sources" in report else report.values()
        assert entry["desirable"] == entry["undesirable"] == len(preference_sft["train"])


@pytest.mark.slow
def test_reward_model_ranks_held_out_pairs(preference_sft):
    """RewardTrainer from the SFT adapter (merged under a new score head): held-out pairwise accuracy above chance
    by a margin, the swapped control below it; the output is a sequence-classification model with the template."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from kotune.inference.score import score_rows

    runs = train_both_ways("rm", preference_sft, "rm", num_train_epochs=8, learning_rate=2.0e-3)
    held = preference_sft["held"]
    rows = [{"prompt": r["prompt"], "answer": a} for r in held for a in (r["chosen"], r["rejected"])]

    def accuracy(run):
        scores = score_rows(run, rows)
        return sum(c > r for c, r in zip(scores[::2], scores[1::2])) / len(held)

    trained, control = accuracy(runs["rm"]), accuracy(runs["swapped_rm"])
    assert trained >= 0.75, trained  # chance is 0.5
    assert control <= 0.25, control
    from peft import AutoPeftModelForSequenceClassification

    model = AutoPeftModelForSequenceClassification.from_pretrained(runs["rm"], num_labels=1)  # adapter + score head
    assert type(model.get_base_model()) is AutoModelForSequenceClassification.from_config(
        model.get_base_model().config).__class__
    assert AutoTokenizer.from_pretrained(runs["rm"]).chat_template  # scored as the policy is prompted


@pytest.mark.slow
def test_grpo_raises_the_speech_level_reward(preference_sft, tmp_path):
    """GRPO from the SFT model (which answers in both registers) with the 합쇼체 speech-level reward: the mean reward
    of the last steps is above that of the first steps."""
    prompts = write_jsonl(tmp_path / "prompts.jsonl",
                          [{"prompt": r["prompt"], "speech_level": "합쇼체"} for r in preference_sft["train"]])
    out = tmp_path / "grpo"
    cfg = preference_config(preference_sft["sft"], out, prompts, fmt="prompt", reward_funcs=["speech_level"],
                            max_steps=24, per_device_train_batch_size=8, num_generations=4, max_completion_length=40,
                            learning_rate=1.0e-3, temperature=1.0, seed=0)
    for key in ("max_prompt_length", "max_length"):
        cfg.pop(key)
    assert run_stage_script("grpo", write_config(tmp_path / "grpo.yaml", cfg)) == 0
    logs = [h for h in json.loads((out / "trainer_state.json").read_text())["log_history"] if "reward" in h]
    first, last = [h["reward"] for h in logs[:6]], [h["reward"] for h in logs[-6:]]
    assert sum(last) / len(last) > sum(first) / len(first) + 0.1, (first, last)
    assert torch.isfinite(torch.tensor([h["loss"] for h in logs])).all()


@pytest.mark.parametrize("method", ["full", "qlora4"])
@pytest.mark.parametrize("stage", ["orpo", "simpo", "cpo", "kto", "rm", "grpo"])
def test_every_stage_trains_from_a_base_full_or_qlora(stage, method, tiny_bases, tmp_path):
    """From a plain base: full weights (reference-free stages hold no second copy) or LoRA on a 4-bit NF4 base;
    the saved model or adapter is what the method promises."""
    data, fmt = write_jsonl(tmp_path / "p.jsonl", PREFS[:16]), "preference"
    extra = {"use_peft": False} if method == "full" else {"load_in_4bit": True, "learning_rate": 1.0e-3}
    if stage == "grpo":
        data, fmt = write_jsonl(tmp_path / "q.jsonl", [{"prompt": r["prompt"]} for r in PREFS[:16]]), "prompt"
        extra.update(reward_funcs=["hangul_share"], num_generations=4, max_completion_length=8)
    out = tmp_path / "out"
    cfg = preference_config(tiny_bases["gpt_neox"], out, data, fmt=fmt, **{"learning_rate": 1.0e-4, "max_steps": 2,
                                                                            **extra})
    if stage == "grpo":
        for key in ("max_prompt_length", "max_length"):
            cfg.pop(key)
    assert run_stage_script(stage, write_config(tmp_path / "c.yaml", cfg)) == 0
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 2
    from huggingface_hub import ModelCard

    card = ModelCard.load(out / "README.md")  # kotune's model card, in every stage's output dir
    assert stage in card.data.tags and card.data.library_name == ("transformers" if method == "full" else "peft")
    if method == "full":
        assert (out / "model.safetensors").is_file() and not (out / "adapter_model.safetensors").exists()
    else:
        from safetensors.torch import load_file

        adapter = load_file(out / "adapter_model.safetensors")
        assert any("lora_B" in k and adapter[k].abs().sum() > 0 for k in adapter)  # the adapter trained


def test_every_stage_is_in_launch_sh_and_sweeps(tmp_path):
    """launch.sh and sweep files read the stage registry: each new stage resolves to its entry script."""
    import subprocess

    from conftest import REPO
    from kotune.tools.sweep_file import load_sweep

    for stage in ("orpo", "simpo", "cpo", "kto", "rm", "grpo"):
        demo = f"configs/{stage}/polyglot-ko-tiny-demo.yaml"
        proc = subprocess.run([str(REPO / "launch.sh"), stage, demo, "--dry-run"], cwd=REPO, capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0 and f"train/{stage}.py {demo}" in proc.stdout, proc.stderr
        sweep = tmp_path / f"{stage}.yaml"
        sweep.write_text(f"base: {REPO / demo}\nkind: {stage}\noutput_dir: {tmp_path / stage}\n"
                         "grid: {learning_rate: [1.0e-4, 5.0e-4]}\n", encoding="utf-8")
        assert load_sweep(sweep, check_paths=False).stage == stage


# GRPO (generation inside training) in the default suite; the other stages' launches are `make test-slow` (25 s each)
@pytest.mark.parametrize("stage", [*(pytest.param(s, marks=pytest.mark.slow) for s in ("orpo", "simpo", "cpo", "kto",
                                                                                      "rm")),
                                   "grpo"])
def test_demo_recipe_trains_through_accelerate_launch(stage, preference_sft, tmp_path):
    """`accelerate launch train/<stage>.py configs/<stage>/polyglot-ko-tiny-demo.yaml`, two CPU processes, on the
    bundled Korean sample, from an SFT output dir (overrides only shorten it)."""
    import subprocess
    import sys
    from pathlib import Path

    from conftest import REPO, subprocess_env

    out = tmp_path / "out"
    accelerate = str(Path(sys.executable).with_name("accelerate"))
    proc = subprocess.run([accelerate, "launch", "--config_file", str(REPO / "configs/accelerate/cpu_2proc.yaml"),
                           str(REPO / "train" / f"{stage}.py"), str(REPO / "configs" / stage / "polyglot-ko-tiny-demo.yaml"),
                           f"--model_name_or_path={preference_sft['sft']}", f"--output_dir={out}", "--max_steps=2",
                           "--report_to=[]", "--logging_steps=1"],
                          cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert json.loads((out / "run_info.json").read_text())["world_size"] == 2
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and all(torch.isfinite(torch.tensor(h["loss"])) for h in state["log_history"]
                                             if "loss" in h)
