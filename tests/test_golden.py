"""Golden losses: a fixed tiny model, data and seed must train to the same loss curve, per architecture.

A change here means users' runs changed. If it is intended, regenerate with
`KOTUNE_REGEN_GOLDEN=1 pytest tests/test_golden.py` and say why in the commit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from conftest import ARCHS, base_config, run_sft_inprocess, write_config

GOLDEN = Path(__file__).parent / "golden" / "sft_losses.json"


@pytest.mark.parametrize("arch", ARCHS)
def test_lora_loss_curve_matches_golden(arch, tiny_bases, tmp_path):
    out = tmp_path / "out"
    cfg = base_config(tiny_bases[arch], out, max_steps=5, lora_dropout=0.0)
    assert run_sft_inprocess(write_config(tmp_path / "c.yaml", cfg)) == 0
    state = json.loads((out / "trainer_state.json").read_text())
    curve = [h["loss"] for h in state["log_history"] if "loss" in h]
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.is_file() else {}
    if os.environ.get("KOTUNE_REGEN_GOLDEN") == "1":
        golden[arch] = curve
        GOLDEN.write_text(json.dumps(golden, indent=2, sort_keys=True) + "\n")
    assert arch in golden, f"no golden curve for {arch}; see this module's docstring"
    torch.testing.assert_close(torch.tensor(curve), torch.tensor(golden[arch]), rtol=2e-4, atol=2e-4)
