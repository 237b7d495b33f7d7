#!/usr/bin/env bash
# GPU benchmark, one GPU, under 8 minutes: a ~1B Llama (random weights, built from config), bf16 LoRA and QLoRA 4-bit,
# padded vs padding-free batches (flash-attention varlen, else sdpa), FSDP2 on the one GPU, Liger kernels on/off when
# installable.
#   bash bench/gpu.sh            (KOTUNE_PYTHON=/path/to/python to choose the interpreter)
# Prints one table: tokens/s, MFU (6·N·tokens/s ÷ 989e12, H100/H200 bf16 dense peak), peak GPU memory, kotune plan's
# estimate. Without a CUDA device it prints one skip line and exits 0.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${KOTUNE_PYTHON:-python3}"

if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" >/dev/null 2>&1; then
  echo "gpu.sh: skipped: no CUDA device (torch.cuda.is_available() is False)"
  exit 0
fi

# What kotune needs, at its pins, keeping the machine's torch; optional kernels only as prebuilt wheels.
pip_quiet() { timeout 180 "$PY" -m pip install -q --disable-pip-version-check "$@" >/dev/null 2>&1; }
"$PY" -c "import transformers, trl, peft, bitsandbytes, datasets, yaml" >/dev/null 2>&1 ||
  pip_quiet transformers==5.23.0 peft==0.21.2 trl==1.16.0 accelerate==1.15.0 datasets==5.2.0 bitsandbytes==0.50.2 \
    pyyaml jinja2 || echo "gpu.sh: pip could not install kotune's libraries; trying with what is installed" >&2
"$PY" -c "import flash_attn" >/dev/null 2>&1 || pip_quiet --only-binary=:all: flash-attn || true
"$PY" -c "import liger_kernel" >/dev/null 2>&1 || pip_quiet --no-deps liger-kernel || true

exec timeout 450 "$PY" bench/gpu_bench.py "$@"
