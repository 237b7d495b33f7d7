"""bench/gpu.sh is ready before there is a GPU: here it prints one skip line and exits 0, and its Python half builds
the ~1B Llama config and kotune plan's estimates on the CPU (meta device, no weights)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
import torch

from conftest import REPO

SKIP_LINE = "gpu.sh: skipped: no CUDA device (torch.cuda.is_available() is False)"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: gpu.sh would run the benchmark")
def test_gpu_sh_prints_one_skip_line_without_cuda():
    out = subprocess.run(["bash", str(REPO / "bench" / "gpu.sh")], capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "KOTUNE_PYTHON": sys.executable})
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [SKIP_LINE]


def test_gpu_bench_config_and_plan_build_on_cpu(tmp_path):
    spec = importlib.util.spec_from_file_location("gpu_bench", REPO / "bench" / "gpu_bench.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    config = bench.llama_1b_config()
    with torch.device("meta"):
        from transformers import AutoModelForCausalLM

        n = sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters())
    assert 1.1e9 < n < 1.4e9
    config.save_pretrained(tmp_path)
    qlora, lora = (bench.plan_estimate(tmp_path, four_bit, 8, 2048) for four_bit in (True, False))
    assert 0 < qlora < lora < 80 * 1024**3
    assert len(bench.setups(flash=False, liger=True)) == 8 and len(bench.setups(flash=False, liger=False)) == 6
    assert sum(bool(s.get("fsdp")) for s in bench.setups(flash=True, liger=False)) == 2  # LoRA and QLoRA under FSDP2
    batch = bench.collate([[5, 6, 7], [8, 9]], padding_free=True, device="cpu")
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1]] and batch["labels"].tolist() == [[-100, 6, 7, -100, 9]]
