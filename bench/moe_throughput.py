"""Benchmark: training tokens/s of a tiny Mixture-of-Experts model against its dense twin at equal ACTIVE parameters.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/moe_throughput.py [--steps 12] [--repeats 3] [--write]

The MoE is a `qwen3_moe` (the Qwen3-30B-A3B layout: routed experts only, router auxiliary loss at the config's
coefficient, as kotune trains it) with 16 experts, 2 per token, each 128 wide. Its dense twin is a `qwen3` with the
same attention, embeddings and depth and one MLP 2 × 128 = 256 wide, so one token goes through the same number of
parameters in both (the router's 16 × hidden weights aside); the MoE holds 8× the MLP weights. Both train in full
(AdamW, fp32, CPU) on the same random batches of 8 × 256 tokens; every token is a real token (no padding). Tokens/s is
counted over the steps after one warm-up step; the setups alternate round-robin for `--repeats` rounds and the
fastest round counts (a shared machine's busy spells only slow runs down), the median beside it. The ratio is MoE /
dense from the same run. Parameter counts come from `kotune.models.memory.count_parameters`, as `kotune plan` prints.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
HIDDEN, LAYERS, HEADS, VOCAB = 256, 4, 4, 4096
EXPERTS, PER_TOKEN, WIDTH = 16, 2, 128
BATCH, SEQ = 8, 256


def build(kind: str):
    import torch
    from transformers import AutoModelForCausalLM, Qwen3Config, Qwen3MoeConfig

    common = dict(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                  num_key_value_heads=2, head_dim=HIDDEN // HEADS, max_position_embeddings=SEQ,
                  tie_word_embeddings=False)
    if kind == "moe":
        config = Qwen3MoeConfig(**common, num_experts=EXPERTS, num_experts_per_tok=PER_TOKEN,
                                moe_intermediate_size=WIDTH, norm_topk_prob=True, output_router_logits=True)
    else:
        config = Qwen3Config(**common, intermediate_size=PER_TOKEN * WIDTH)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config), config


def counts(config):
    from types import SimpleNamespace

    from kotune.models.memory import count_parameters

    return count_parameters(config, SimpleNamespace(use_peft=False))


def time_steps(model, batches, steps: int) -> float:
    """Seconds for `steps` full training steps after one warm-up step."""
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    for i in range(steps + 1):
        if i == 1:
            start = time.perf_counter()
        ids = batches[i % len(batches)]
        loss = model(input_ids=ids, labels=ids).loss  # the MoE's loss includes the router's auxiliary loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main() -> None:
    import torch

    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="replace this bench's section of bench/RESULTS.md")
    args = parser.parse_args()
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randint(3, VOCAB, (BATCH, SEQ), generator=gen) for _ in range(4)]
    models = {kind: build(kind) for kind in ("moe", "dense")}
    rates = {kind: [] for kind in models}
    for _ in range(args.repeats):
        for kind, (model, _) in models.items():
            rates[kind].append(args.steps * BATCH * SEQ / time_steps(model, batches, args.steps))
    rows = []
    for kind, (model, config) in models.items():
        c = counts(config)
        rows.append((kind, c.total, c.active, max(rates[kind]), statistics.median(rates[kind])))
    moe, dense = rows
    impl = getattr(models["moe"][1], "_experts_implementation", None) or "default"
    lines = [
        "| model | total params | active per token | tokens/s (fastest) | tokens/s (median) | vs dense |",
        "|---|---|---|---|---|---|",
    ]
    for kind, total, active, best, med in rows:
        name = (f"qwen3_moe, {EXPERTS} experts × {WIDTH}, {PER_TOKEN} per token" if kind == "moe"
                else f"qwen3 dense twin, MLP {PER_TOKEN * WIDTH}")
        lines.append(f"| {name} | {total / 1e6:.2f} M | {active / 1e6:.2f} M | {best:,.0f} | {med:,.0f} | "
                     f"{best / dense[3]:.2f}× ({med / dense[4]:.2f}× by medians) |")
    note = (f"Full fine-tuning, AdamW, fp32, batch {BATCH} × {SEQ} tokens, {args.steps} timed steps × "
            f"{args.repeats} rounds, torch {torch.__version__}, {torch.get_num_threads()} threads, experts "
            f"implementation: {impl}. Equal active parameters (the router's {LAYERS} × {EXPERTS} × {HIDDEN} "
            "weights aside); the MoE holds 8× the MLP weights, so its optimizer state and gradients are larger.")
    table = "\n".join(lines)
    print(table + "\n\n" + note)
    if args.write:
        from packing import write_results

        write_results("moe_throughput", table + "\n\n" + note,
                      f"python bench/moe_throughput.py --steps {args.steps} --repeats {args.repeats}")


if __name__ == "__main__":
    main()
