"""Config loading and validation: every problem at once, near-key suggestions, overrides, shipped YAML."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import REPO, SAMPLE, base_config, write_config
from kotune.config import build_config, load_config, parse_overrides
from kotune.errors import ConfigError


def problems_of(raw: dict, **kw) -> list[str]:
    with pytest.raises(ConfigError) as info:
        build_config(raw, **kw)
    return info.value.problems


def test_overrides_accept_both_forms_and_launcher_rank(tmp_path, tiny_bases):
    path = write_config(tmp_path / "c.yaml", base_config(tiny_bases["gpt_neox"], tmp_path / "out"))
    cfg = load_config([str(path), "--learning_rate=3e-4", "--max_steps", "3", "--local_rank=0",
                       "--dataset_mixture.seed=9", "--lora_target_modules=[query_key_value]"])
    assert cfg.training.learning_rate == pytest.approx(3e-4)  # YAML reads 3e-4 as a string; coerced
    assert cfg.training.max_steps == 3
    assert cfg.kotune.dataset_mixture.seed == 9
    assert cfg.model.lora_target_modules == "query_key_value"  # TRL unwraps a one-item list


def test_parse_overrides_bare_flag_is_true():
    assert parse_overrides(["--use_peft", "--lora_r", "4"]) == {"use_peft": True, "lora_r": 4}


def test_misspelled_key_names_the_near_one(tmp_path, tiny_bases):
    raw = base_config(tiny_bases["llama"], tmp_path / "out")
    raw["lerning_rate"] = raw.pop("learning_rate")
    (msg,) = problems_of(raw)
    assert "lerning_rate" in msg and "did you mean 'learning_rate'" in msg


def test_every_problem_reported_at_once(tmp_path, tiny_bases):
    raw = base_config(tiny_bases["llama"], tmp_path / "out", lora_r="big", num_train_epochs="x",
                      load_in_4bit=True, load_in_8bit=True, promt_format="komt")
    raw["dataset_mixture"]["datasets"][0]["wieght"] = 0.5
    found = "\n".join(problems_of(raw))
    for needle in ["lora_r: expected an integer", "num_train_epochs: expected a number",
                   "load_in_4bit and load_in_8bit", "promt_format", "'prompt_format'", "wieght", "did you mean 'weight'"]:
        assert needle in found, needle


def test_wrong_types_name_the_key():
    raw = {"model_name_or_path": "org/model", "output_dir": "x", "use_peft": "yes", "max_length": [1],
           "dataset_mixture": {"datasets": [{"id": "org/data", "format": "instruction", "weight": "heavy"}]}}
    found = "\n".join(problems_of(raw))
    assert "use_peft: expected true or false" in found
    assert "max_length: expected" in found
    assert "dataset_mixture.datasets[0].weight: expected a number" in found


def test_quantized_full_finetune_and_missing_paths_are_refused(tmp_path):
    raw = {"model_name_or_path": str(tmp_path / "nope"), "output_dir": str(tmp_path / "o"), "load_in_8bit": True,
           "dataset_mixture": {"datasets": [{"id": str(tmp_path / "missing.jsonl"), "format": "instruction"}]}}
    found = "\n".join(problems_of(raw))
    assert "cannot be fully fine-tuned" in found and "use_peft: true" in found
    assert "does not exist" in found and "missing.jsonl' not found" in found


def test_8bit_with_zero3_is_refused(tmp_path):
    ds = tmp_path / "z3.json"
    ds.write_text('{"zero_optimization": {"stage": 3}, "train_micro_batch_size_per_gpu": "auto"}')
    raw = {"model_name_or_path": "org/model", "output_dir": "x", "use_peft": True, "load_in_8bit": True,
           "deepspeed": str(ds), "dataset_mixture": {"datasets": [{"id": "org/data", "format": "instruction"}]}}
    found = "\n".join(problems_of(raw))
    assert "load_in_8bit cannot be combined with ZeRO-3" in found and "load_in_4bit" in found


def test_dataset_source_keys(tmp_path):
    raw = {"model_name_or_path": "org/model", "output_dir": "x",
           "dataset_mixture": {"datasets": [{"format": "instrction", "max_samples": 0}, {"path": "b.jsonl"}]}}
    found = "\n".join(problems_of(raw, check_paths=False))
    assert "datasets[0].id: required" in found and "datasets[1]" not in found  # TRL's path is read as id
    assert "'instrction' is not one of" in found and "did you mean 'instruction'" in found
    assert "max_samples: must be >= 1" in found


def test_defaults_are_applied_and_recorded(tmp_path, tiny_bases):
    raw = base_config(tiny_bases["gpt_neox"], tmp_path / "out")
    del raw["report_to"]
    cfg = build_config(raw)
    assert cfg.training.report_to == ["tensorboard"]
    assert cfg.resolved["report_to"] == ["tensorboard"]
    assert cfg.training.logging_nan_inf_filter is False  # a NaN must not be hidden in the logs
    assert cfg.model.use_bnb_nested_quant is True  # QLoRA double quantization by default


def test_report_to_empty_is_honoured(tmp_path, tiny_bases):
    cfg = build_config(base_config(tiny_bases["gpt_neox"], tmp_path / "out", report_to=[]))
    assert cfg.training.report_to == []


SHIPPED = sorted((REPO / "configs" / "sft").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_sft_configs_validate(path: Path):
    text = path.read_text(encoding="utf-8")
    assert text.startswith("#") and "train/sft.py" in text.splitlines()[1] + text.splitlines()[2], \
        "every shipped config starts with its launch command"
    cfg = build_config(yaml.safe_load(text), source=str(path), check_paths=False)
    assert cfg.training.output_dir and cfg.kotune.dataset_mixture.datasets


SHIPPED_DPO = sorted((REPO / "configs" / "dpo").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED_DPO, ids=lambda p: p.name)
def test_shipped_dpo_configs_validate(path: Path):
    text = path.read_text(encoding="utf-8")
    assert text.startswith("#") and "train/dpo.py" in "".join(text.splitlines()[1:4])
    cfg = build_config(yaml.safe_load(text), stage="dpo", source=str(path), check_paths=False)
    assert cfg.kotune.max_prompt_length and cfg.training.beta > 0
    # answers stay whole: every shipped DPO/IPO recipe adds TRL's NLL term on the chosen answers (bench/RESULTS.md)
    assert "sft" in cfg.training.loss_type and len(cfg.training.loss_weights) == len(cfg.training.loss_type)
    assert all(s.format == "preference" for s in cfg.kotune.dataset_mixture.datasets)


def test_dpo_recipes_include_komt_and_polyglot():
    names = {p.name for p in SHIPPED_DPO}
    assert {"komt-mistral-7b-dpo.yaml", "polyglot-ko-5.8b-dpo.yaml"} <= names
    komt = yaml.safe_load((REPO / "configs/dpo/komt-mistral-7b-dpo.yaml").read_text())
    assert komt["dataset_mixture"]["datasets"][0]["id"] == "maywell/ko_Ultrafeedback_binarized"


def test_max_prompt_length_is_dpo_only(tmp_path, tiny_bases):
    raw = base_config(tiny_bases["gpt_neox"], tmp_path / "out", max_prompt_length=64)
    assert any("only used by DPO" in p for p in problems_of(raw))


def test_demo_config_matches_the_contract_name():
    assert list((REPO / "configs" / "sft").glob("*demo*.yaml"))


def test_recipes_cover_every_base_and_method():
    names = {p.name for p in SHIPPED}
    for needed in ["polyglot-ko-1.3b-qlora.yaml", "polyglot-ko-1.3b-lora-8bit.yaml", "polyglot-ko-5.8b-qlora.yaml",
                   "polyglot-ko-5.8b-lora-8bit.yaml", "llama-2-7b-qlora.yaml", "mistral-7b-v0.1-qlora.yaml",
                   "komt-llama-2-7b-qlora.yaml"]:
        assert needed in names
    komt = yaml.safe_load((REPO / "configs/sft/komt-llama-2-7b-qlora.yaml").read_text())
    assert (komt["lora_r"], komt["lora_alpha"], komt["lora_dropout"], komt["prompt_format"]) == (8, 32, 0.05, "komt")


def test_sample_file_exists():
    assert SAMPLE.is_file()


def test_override_inside_a_list(tmp_path, tiny_bases):
    other = tmp_path / "other.jsonl"
    other.write_text('{"instruction": "질문", "output": "답"}\n')
    path = write_config(tmp_path / "c.yaml", base_config(tiny_bases["gpt_neox"], tmp_path / "out"))
    cfg = load_config([str(path), f"--dataset_mixture.datasets.0.id={other}"])
    assert cfg.kotune.dataset_mixture.datasets[0].id == str(other)


def test_sft_help_lists_keys():
    import subprocess
    import sys
    from pathlib import Path

    kotune = str(Path(sys.executable).with_name("kotune"))
    proc = subprocess.run([kotune, "sft", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    for key in ("dataset_mixture", "prompt_format", "load_in_4bit", "learning_rate", "packing"):
        assert key in proc.stdout


STAGE_CONFIGS = [(stage, p) for stage in ("orpo", "simpo", "cpo", "kto", "rm", "grpo", "dpo")
                 for p in sorted((REPO / "configs" / stage).glob("*.yaml"))]


@pytest.mark.parametrize("stage,path", STAGE_CONFIGS, ids=lambda x: getattr(x, "name", x))
def test_shipped_stage_configs_validate_for_their_stage(stage, path: Path):
    """Every recipe under configs/<stage>/ names its launch line and validates for that stage (and its data shape)."""
    from kotune.stages.registry import get_stage

    text = path.read_text(encoding="utf-8")
    assert text.startswith("#") and f"train/{stage}.py" in "".join(text.splitlines()[:5])
    cfg = build_config(yaml.safe_load(text), stage=stage, source=str(path), check_paths=False)
    assert all(get_stage(stage).reads_format(s.format) for s in cfg.kotune.dataset_mixture.datasets)
    if stage == "simpo":
        assert cfg.training.loss_type == "simpo" and cfg.training.cpo_alpha == 0.0


def test_simpo_stage_defaults_to_pure_simpo(tmp_path, tiny_bases):
    raw = base_config(tiny_bases["gpt_neox"], tmp_path / "out",
                      dataset_mixture={"datasets": [{"id": str(REPO / "src/kotune/data/sample/preference.jsonl"),
                                                     "format": "preference"}]})
    cfg = build_config(raw, stage="simpo", check_paths=False)
    assert (cfg.training.loss_type, cfg.training.cpo_alpha) == ("simpo", 0.0)
    # a CPO recipe never becomes SimPO: the simpo stage refuses CPO's losses by name, and cpo runs them
    found = "\n".join(problems_of({**raw, "loss_type": "sigmoid", "cpo_alpha": 1.0}, stage="simpo"))
    assert "loss_type: 'sigmoid' does not fit the simpo stage" in found and "kotune cpo" in found
    cfg = build_config(raw, stage="cpo", check_paths=False)
    assert (cfg.training.loss_type, cfg.training.cpo_alpha) == ("sigmoid", 1.0)  # TRL's CPO defaults
    assert "kotune simpo" in "\n".join(problems_of({**raw, "loss_type": "simpo"}, stage="cpo"))


def test_grpo_reward_names_are_checked(tmp_path, tiny_bases):
    raw = base_config(tiny_bases["gpt_neox"], tmp_path / "out",
                      dataset_mixture={"datasets": [{"id": str(REPO / "src/kotune/data/sample/prompts.jsonl"),
                                                     "format": "prompt"}]})
    raw.pop("max_length")  # not a GRPOConfig field: completions are capped by max_completion_length
    assert any("reward_funcs: required" in p for p in problems_of(raw, stage="grpo"))
    problems = problems_of({**raw, "reward_funcs": ["exact_answr"]}, stage="grpo")
    assert any("'exact_answr' is not a shipped reward" in p and "exact_answer" in p for p in problems), problems
    from kotune.config.validation import check_config

    assert not check_config({**raw, "reward_funcs": ["exact_answer", "mypkg.rewards:length"]}, "grpo",
                            check_paths=False)[-1]
    assert any("reward_funcs: only used by GRPO" in p
               for p in problems_of({**raw, "reward_funcs": ["exact_answer"]}, stage="sft"))
