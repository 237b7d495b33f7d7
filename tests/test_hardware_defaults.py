"""Precision and gradient checkpointing chosen from the hardware when left unset: bf16 only where it is native,
checkpointing off on the CPU, the reason logged and recorded in run_info.json; an explicit setting wins."""

from __future__ import annotations

import json
import logging

from conftest import base_config, run_sft_inprocess, write_config
from kotune.config import build_config
from kotune.config.hardware import checkpointing_from_plan, native_cpu_bf16


def unset(raw: dict) -> dict:
    return {k: v for k, v in raw.items() if k not in ("bf16", "gradient_checkpointing")}


def test_unset_precision_follows_the_cpu(tmp_path, tiny_bases):
    cfg = build_config(unset(base_config(tiny_bases["gpt_neox"], tmp_path / "o")))
    native = native_cpu_bf16()
    assert cfg.training.bf16 is native and not cfg.training.fp16  # not TRL's bf16=True on an emulating CPU
    assert cfg.training.gradient_checkpointing is False and cfg.resolved["gradient_checkpointing"] is False
    assert cfg.hardware["precision"].startswith("bf16" if native else "fp32")


def test_a_kernel_isa_cap_below_bf16_means_fp32(tmp_path, tiny_bases, monkeypatch):
    """ONEDNN_MAX_CPU_ISA=AVX2 makes torch emulate bf16 even on an AVX512-BF16 CPU: kotune then trains in fp32."""
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    cfg = build_config(unset(base_config(tiny_bases["gpt_neox"], tmp_path / "o")))
    assert cfg.training.bf16 is False and not cfg.training.fp16
    assert cfg.hardware["precision"].startswith("fp32: this CPU has no native bf16 at ONEDNN_MAX_CPU_ISA=AVX2")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx512_core_amx")  # a cap at or above bf16 changes nothing
    native = native_cpu_bf16()
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    assert native is native_cpu_bf16()


def test_an_explicit_setting_wins_and_emulated_bf16_is_warned(tmp_path, tiny_bases, caplog):
    raw = {**base_config(tiny_bases["gpt_neox"], tmp_path / "o"), "bf16": True, "gradient_checkpointing": True}
    with caplog.at_level(logging.WARNING, logger="kotune.config"):
        cfg = build_config(raw)
    assert cfg.training.bf16 is True and cfg.training.gradient_checkpointing is True
    assert cfg.hardware == {"precision": "as configured", "gradient_checkpointing": "as configured"}
    assert ("emulates it" in caplog.text) is (not native_cpu_bf16())


def test_the_choice_is_recorded_in_run_info(tmp_path, tiny_bases):
    out = tmp_path / "out"
    assert run_sft_inprocess(write_config(tmp_path / "c.yaml", unset(base_config(tiny_bases["gpt_neox"], out,
                                                                                  max_steps=2)))) == 0
    precision = json.loads((out / "run_info.json").read_text())["precision"]
    assert precision["bf16"] is native_cpu_bf16() and precision["precision"] and precision["gradient_checkpointing"]


def test_checkpointing_on_a_gpu_only_when_the_plan_does_not_fit_without_it():
    """The decision of a GPU run with gradient_checkpointing unset, from given plan numbers (no GPU needed)."""
    gib = 1024**3
    on, why = checkpointing_from_plan(without=30 * gib, with_=12 * gib, device_bytes=80 * gib)
    assert on is False and "30.0 GiB per GPU without it, 12.0 GiB with it" in why and "80.0 GiB" in why
    on, why = checkpointing_from_plan(without=75 * gib, with_=40 * gib, device_bytes=80 * gib)
    assert on is True and why.startswith("on: the run does not fit without it")  # 75 > 90% of 80
    on, why = checkpointing_from_plan(without=200 * gib, with_=100 * gib, device_bytes=80 * gib)
    assert on is True and "may not fit with it either" in why


def test_the_plan_numbers_differ_with_and_without_checkpointing(tmp_path, tiny_bases):
    """What the GPU decision compares: kotune plan's estimator for this run, with and without checkpointing."""
    from kotune.models.memory import count_parameters, estimate, model_config

    cfg = build_config({**base_config(tiny_bases["gpt_neox"], tmp_path / "o"), "max_length": 512})
    config = model_config(cfg.model.model_name_or_path)
    counts = count_parameters(config, cfg.model)
    without, with_ = (estimate(cfg, counts, config, 1, checkpointing=c) for c in (False, True))
    assert without["activations"] > with_["activations"] and without["per_gpu"] > with_["per_gpu"]
    assert without["weights"] == with_["weights"]
