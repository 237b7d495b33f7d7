"""The Python half of bench/gpu.sh: a ~1B Llama from config on one GPU, LoRA/QLoRA × padded/padding-free × Liger.

    bash bench/gpu.sh        (or: python bench/gpu_bench.py [--steps 10] [--batch 8] [--max-length 2048])

Each setup trains LoRA (r=16, every linear layer, as kotune's Llama spec) for `--warmup` + `--steps` optimizer steps
on the same batches (a long tail of lengths up to max_length); only the last `--steps` are timed. tokens/s counts
non-pad tokens. MFU = 6·N·tokens/s ÷ 989e12 (N = all parameters, the H100/H200 dense bf16 peak; LoRA does about 4N
of work, so 6N overstates it by ~1.5x). "plan" is kotune plan's estimate for the same config. The whole run stops
adding setups after `--budget` seconds so that gpu.sh ends within 8 minutes.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
PEAK_FLOPS = 989e12
GiB = 1024**3


def llama_1b_config():
    """Llama-3.2-1B's shape (16 layers, hidden 2048, GQA 32/8 heads, vocab 128256): about 1.24 B parameters."""
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                       num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192,
                       rope_theta=500000.0, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=0)


def plan_estimate(config_dir: Path, four_bit: bool, batch: int, max_length: int) -> float:
    """kotune plan's bytes per GPU for this model and setup (the same estimator as `kotune plan`)."""
    from kotune.config import build_config
    from kotune.models.memory import count_parameters, estimate, model_config
    from kotune.testing.tiny import sample_path

    raw = {"model_name_or_path": str(config_dir), "output_dir": str(config_dir / "out"), "use_peft": True,
           "lora_r": 16, "lora_alpha": 32, "load_in_4bit": four_bit, "dtype": "bfloat16", "bf16": True,
           "per_device_train_batch_size": batch, "max_length": max_length, "gradient_checkpointing": False,
           "dataset_mixture": {"datasets": [{"id": str(sample_path()), "format": "instruction"}]}, "report_to": []}
    cfg = build_config(raw, check_paths=False)
    config = model_config(str(config_dir))
    return estimate(cfg, count_parameters(config, cfg.model), config, 1)["per_gpu"]


def make_batches(n: int, batch: int, max_length: int, vocab: int, seed: int = 0) -> list[list[list[int]]]:
    """n batches of `batch` random sequences with lengths log-uniform in [64, max_length]."""
    rng = random.Random(seed)
    return [[[rng.randrange(3, vocab) for _ in range(int(2 ** rng.uniform(6, max_length.bit_length() - 1)))]
             for _ in range(batch)] for _ in range(n)]


def collate(seqs: list[list[int]], padding_free: bool, device) -> dict:
    import torch

    if padding_free:  # one row, position_ids restart per example: varlen attention, no pad tokens
        ids = torch.tensor([[t for s in seqs for t in s]], device=device)
        pos = torch.tensor([[i for s in seqs for i in range(len(s))]], device=device)
        labels = ids.clone()
        starts = torch.tensor([0] + [len(s) for s in seqs[:-1]]).cumsum(0)
        labels[0, starts.to(device)] = -100  # never predict one example from the previous one
        return {"input_ids": ids, "position_ids": pos, "labels": labels}
    width = max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, :len(s)], mask[i, :len(s)] = torch.tensor(s), 1
    labels = ids.masked_fill(mask == 0, -100)
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}


def build_model(weights_dir: Path, four_bit: bool, attn: str, liger: bool, fsdp: bool = False):
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from kotune.models.architectures import spec_for

    if liger:
        from liger_kernel.transformers import apply_liger_kernel_to_llama

        apply_liger_kernel_to_llama()
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.bfloat16,
                               # FSDP2 shards the packed 4-bit storage as the compute dtype (peft#1550)
                               bnb_4bit_quant_storage=torch.bfloat16 if fsdp else torch.uint8) if four_bit else None
    model = AutoModelForCausalLM.from_pretrained(weights_dir, dtype=torch.bfloat16, attn_implementation=attn,
                                                 quantization_config=quant, device_map={"": 0})
    model.config.use_cache = False
    if four_bit:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    targets = spec_for("llama").targets(None)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=targets,
                                             task_type="CAUSAL_LM"))
    return shard_one_gpu(model) if fsdp else model


def shard_one_gpu(model):
    """FSDP2 on this one GPU (a 1-rank NCCL group), block by block as kotune's FSDP2 runs wrap it: what sharding
    itself costs (hooks, all-gather/reduce-scatter calls, resharding) against the same setup without it."""
    import os

    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    from kotune.stages.fsdp import block_classes

    if not dist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29533")
        dist.init_process_group("nccl", rank=0, world_size=1)
    blocks = set(block_classes(model.get_base_model()))
    for module in model.modules():
        if type(module).__name__ in blocks:
            fully_shard(module)
    fully_shard(model)
    return model


def run_setup(weights_dir: Path, batches, four_bit: bool, padding_free: bool, attn: str, liger: bool,
              warmup: int, fsdp: bool = False) -> tuple[float, float]:
    """(non-pad tokens/s over the timed steps, peak GPU bytes)."""
    import torch

    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    model = build_model(weights_dir, four_bit, attn, liger, fsdp)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    tokens, start = 0, None
    for step, seqs in enumerate(batches):
        if step == warmup:
            torch.cuda.synchronize()
            start, tokens = time.perf_counter(), 0
        batch = collate(seqs, padding_free, "cuda")
        model(**batch).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens += sum(len(s) for s in seqs)
    torch.cuda.synchronize()
    speed = tokens / (time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated()
    del model, opt
    gc.collect()
    torch.cuda.empty_cache()
    return speed, peak


def setups(flash: bool, liger: bool) -> list[dict]:
    """The grid: method × batching (varlen attention where padding-free) × FSDP2 (one GPU) × Liger. Liger patches
    the Llama classes for the rest of the process, so its setups come last."""
    free_attn = "flash_attention_2" if flash else "sdpa"
    grid = []
    for four_bit in (False, True):
        grid.append({"four_bit": four_bit, "padding_free": False, "attn": "sdpa", "liger": False})
        grid.append({"four_bit": four_bit, "padding_free": True, "attn": free_attn, "liger": False})
        grid.append({"four_bit": four_bit, "padding_free": True, "attn": free_attn, "liger": False, "fsdp": True})
    if liger:
        grid += [{"four_bit": four_bit, "padding_free": True, "attn": free_attn, "liger": True}
                 for four_bit in (False, True)]
    return grid


def available(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--budget", type=float, default=390, help="seconds after which no new setup starts")
    opts = parser.parse_args()
    t0 = time.perf_counter()
    import torch
    from transformers import AutoModelForCausalLM

    if not torch.cuda.is_available():
        print("gpu_bench.py: skipped: no CUDA device (torch.cuda.is_available() is False)")
        return 0
    config = llama_1b_config()
    work = Path(tempfile.mkdtemp(prefix="kotune-gpu-bench-"))
    config.save_pretrained(work)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    n_params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(work)  # random weights, loaded back per setup (4-bit quantizes them on load)
    del model
    torch.cuda.empty_cache()
    flash, liger = available("flash_attn"), available("liger_kernel")
    batches = make_batches(opts.warmup + opts.steps, opts.batch, opts.max_length, config.vocab_size)
    print(f"{torch.cuda.get_device_name(0)}; Llama {n_params / 1e9:.2f} B params; batch {opts.batch} x up to "
          f"{opts.max_length} tokens; flash-attn {'yes' if flash else 'no (sdpa)'}; liger {'yes' if liger else 'no'}")
    rows = []
    for s in setups(flash, liger):
        name = (f"{'QLoRA 4-bit' if s['four_bit'] else 'bf16 LoRA'}, "
                f"{'padding-free (' + s['attn'] + ')' if s['padding_free'] else 'padded (sdpa)'}"
                f"{', FSDP2 (1 GPU)' if s.get('fsdp') else ''}{', liger' if s['liger'] else ''}")
        if time.perf_counter() - t0 > opts.budget:
            rows.append(f"| {name} | skipped: time budget | | | |")
            continue
        plan = plan_estimate(work, s["four_bit"], opts.batch, opts.max_length)
        try:
            speed, peak = run_setup(work, batches, s["four_bit"], s["padding_free"], s["attn"], s["liger"],
                                    opts.warmup, s.get("fsdp", False))
        except Exception as err:  # one setup failing (an optional kernel) must not hide the others
            rows.append(f"| {name} | failed: {type(err).__name__}: {str(err)[:80]} | | | {plan / GiB:.1f} |")
            continue
        mfu = 6 * n_params * speed / PEAK_FLOPS
        rows.append(f"| {name} | {speed:,.0f} | {100 * mfu:.1f}% | {peak / GiB:.1f} | {plan / GiB:.1f} |")
    print("| setup | tokens/s | MFU (6N) | peak GPU memory (GiB) | kotune plan (GiB) |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
