"""Precision and gradient checkpointing chosen from the hardware when left unset: bf16 only where it is native,
checkpointing off on the CPU, the reason logged and recorded in run_info.json; an explicit setting wins."""

from __future__ import annotations

import json
import logging

from conftest import base_config, run_sft_inprocess, write_config
from kotune.config import build_config
from kotune.config.hardware import native_cpu_bf16


def unset(raw: dict) -> dict:
    return {k: v for k, v in raw.items() if k not in ("bf16", "gradient_checkpointing")}


def test_unset_precision_follows_the_cpu(tmp_path, tiny_bases):
    cfg = build_config(unset(base_config(tiny_bases["gpt_neox"], tmp_path / "o")))
    native = native_cpu_bf16()
    assert cfg.training.bf16 is native and not cfg.training.fp16  # not TRL's bf16=True on an emulating CPU
    assert cfg.training.gradient_checkpointing is False and cfg.resolved["gradient_checkpointing"] is False
    assert cfg.hardware["precision"].startswith("bf16" if native else "fp32")


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
