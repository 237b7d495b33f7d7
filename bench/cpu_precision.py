"""Benchmark: what bf16 buys on this CPU, by matrix size: the reason `precision: auto` picks bf16 on a CPU with
AVX512-BF16/AMX even where bench/sft_speed.py's tiny model (hidden 128) trains faster in fp32.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/cpu_precision.py [--write]

Square matmuls on every core, fp32 as the baseline in the same run, then bf16: GFLOP/s and the ratio. Sizes run
from the tiny test models' hidden size to a 1B model's.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def gflops(n: int, dtype) -> float:
    import torch

    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    reps = max(3, int(4e9 / n**3))
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e9


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true", help="record the results in bench/RESULTS.md")
    opts = parser.parse_args()
    import torch

    from kotune.config.hardware import native_cpu_bf16

    torch.set_num_threads(os.cpu_count() or 1)
    rows = []
    for n in (128, 512, 1024, 2048):
        fp32, bf16 = gflops(n, torch.float32), gflops(n, torch.bfloat16)
        rows.append(f"| {n} | {fp32:.0f} | {bf16:.0f} | {bf16 / fp32:.2f}× |")
    table = "\n".join([f"native bf16 (kotune.config.hardware.native_cpu_bf16): {native_cpu_bf16()}", "",
                       "| matrix size | fp32 GFLOP/s (baseline) | bf16 GFLOP/s | bf16 vs fp32 |", "|---|---|---|---|",
                       *rows])
    print(table)
    if opts.write:
        from packing import write_results

        write_results("cpu_precision", table, "python bench/cpu_precision.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
