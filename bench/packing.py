"""Benchmark: kotune's padding-free packing vs TRL SFTTrainer's default padded batches, on a KIT-19-like mix.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/packing.py [--rows 100000] [--steps 30] [--write]

Generates `--rows` raw rows for the 20 KIT-19 slots from the bundled samples (text fields stretched to a long-tail
length mix), then measures, in one run:
  1. preprocessing throughput: cold in one process, cold with `dataset_num_proc=--num-proc`, wall and CPU seconds
     (a shared machine's load shows as wall > CPU / cores), and from cache;
  2. the useful-token fraction (non-pad tokens ÷ tokens computed) of the batches each collator builds;
  3. training useful tokens/s on a tiny GPT-NeoX, kotune padding-free vs TRL default padding, same data/order.
Ratios are against the TRL default measured in the same run. `--write` records the table in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "src" / "kotune" / "data" / "sample" / "kit19"
LONG_FIELDS = ("text", "document", "content", "paragraph", "context", "premise", "input", "sentence1", "문장",
               "comment", "question")


def make_rows(n_rows: int, out_dir: Path, seed: int = 0) -> list[Path]:
    """n_rows raw rows spread over the 20 tasks, with stretched text fields (lengths roughly log-uniform)."""
    rng = random.Random(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    tasks = sorted(p.stem for p in SAMPLES.glob("*.jsonl"))
    per_task = n_rows // len(tasks)
    for task in tasks:
        rows = [json.loads(line) for line in (SAMPLES / f"{task}.jsonl").read_text(encoding="utf-8").splitlines()]
        pool = [v for r in rows for v in r.values() if isinstance(v, str) and len(v) > 10]
        path = out_dir / f"{task}.jsonl"
        with path.open("w", encoding="utf-8") as f:
            for i in range(per_task):
                row = dict(rows[i % len(rows)])
                for key in row:
                    if key in LONG_FIELDS and isinstance(row[key], str):
                        repeats = int(2 ** rng.uniform(0, 4.5)) - 1  # 0–21 extra sentences: a long tail
                        row[key] = " ".join([row[key]] + rng.choices(pool, k=repeats))
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        files.append(path)
    return files


def config(files: list[Path], base: Path, out: Path, rows: int) -> dict:
    return {
        "model_name_or_path": str(base), "dtype": "float32", "prompt_format": "koquality",
        "dataset_mixture": {"seed": 0, "datasets": [
            {"id": str(p), "format": f"kit19/{p.stem}", "max_samples": rows} for p in files]},
        "output_dir": str(out), "max_length": 1024, "num_train_epochs": 1, "per_device_train_batch_size": 8,
        "report_to": [], "bf16": False, "use_peft": True, "lora_r": 8, "lora_alpha": 16,
    }


def timed(fn, *args):
    """((wall s, CPU s of this process and its finished children), fn(*args))."""
    import resource

    def cpu():
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

    t0, c0 = time.perf_counter(), cpu()
    out = fn(*args)
    return (time.perf_counter() - t0, cpu() - c0), out


def tokenizer_floor(tok, files: list[Path]) -> float:
    """Seconds the Rust tokenizer alone takes over the rows' text (every string field), batched on every core:
    the part of preprocessing no Python change can remove."""
    texts = [" ".join(v for v in json.loads(line).values() if isinstance(v, str))
             for path in files for line in path.read_text(encoding="utf-8").splitlines()]
    backend = tok.backend_tokenizer
    start = time.perf_counter()
    for first in range(0, len(texts), 10_000):
        backend.encode_batch_fast(texts[first:first + 10_000], add_special_tokens=False)
    return time.perf_counter() - start


def real_vocab_tokenizer():
    """Qwen2's real 152K vocabulary from `make vocab`'s GGUF file, or None where it was not extracted."""
    path = Path(os.environ.get("KOTUNE_GGUF_VOCAB", Path.home() / ".cache" / "kotune" / "gguf_vocab"))
    if not (path / "ggml-vocab-qwen2.gguf").is_file():
        return None
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(str(path), gguf_file="ggml-vocab-qwen2.gguf")


def batch_fraction(dataset, collate, batch_size: int, pad_id: int, n_batches: int, seed: int = 0):
    order = list(range(len(dataset)))
    random.Random(seed).shuffle(order)
    useful = computed = 0
    batches = []
    for b in range(min(n_batches, len(order) // batch_size)):
        batch = collate([dataset[i] for i in order[b * batch_size:(b + 1) * batch_size]])
        batches.append(batch)
        n = batch["input_ids"].numel()
        pad = int((batch.get("attention_mask", batch["input_ids"] * 0 + 1) == 0).sum())
        useful += n - pad
        computed += n
    return useful / computed, batches


def train_speed(model_dir: Path, batches: list[dict], steps: int) -> float:
    """Useful (non-pad) tokens per second over `steps` optimizer steps of a tiny model, one batch per step."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    model.config.use_cache = False
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    useful, start = 0, None
    for step, batch in enumerate(batches[: steps + 2]):
        if step == 2:
            start, useful = time.perf_counter(), 0  # two warm-up steps
        inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "position_ids", "labels")}
        loss = model(**inputs).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        mask = batch.get("attention_mask")
        useful += int(mask.sum()) if mask is not None else batch["input_ids"].numel()
    return useful / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--num-proc", type=int, default=None,
                        help="dataset_num_proc of the second cold run (default: unset, kotune's own choice)")
    parser.add_argument("--write", action="store_true", help="record the results in bench/RESULTS.md")
    opts = parser.parse_args()

    import torch

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    from kotune.config import build_config
    from kotune.data.packing import collator
    from kotune.data.prepare import prepare_sft_data
    from kotune.models.loading import load_tokenizer
    from kotune.data.prompt_formats import install_template
    from kotune.testing.tiny import tiny_base

    work = Path(tempfile.mkdtemp(prefix="kotune-bench-"))
    os.environ["KOTUNE_CACHE_DIR"] = str(work / "cache")
    base = tiny_base("gpt_neox", work / "base", hidden=128, layers=2, seed=0)
    files = make_rows(opts.rows, work / "data")
    num_proc = {"dataset_num_proc": opts.num_proc} if opts.num_proc else {}
    cfg = build_config({**config(files, base, work / "out", opts.rows), **num_proc})
    tok = load_tokenizer(str(base))
    install_template(tok, "koquality")

    one = build_config({**config(files, base, work / "out", opts.rows), "dataset_num_proc": 1, "data_cache": False})
    (cold1, cpu1), (variants1, _, _, _) = timed(prepare_sft_data, one, tok)
    (cold, cpu), (variants, _, report, hit) = timed(prepare_sft_data, cfg, tok)
    assert not hit and variants[0].to_dict() == variants1[0].to_dict()  # any process count, the same data
    t0 = time.perf_counter()
    variants2, _, _, hit2 = prepare_sft_data(cfg, tok)
    warm = time.perf_counter() - t0
    assert hit2 and len(variants2[0]) == len(variants[0])
    floor = tokenizer_floor(tok, files)
    real = real_vocab_tokenizer()
    if real is not None:
        install_template(real, "koquality")
        uncached = build_config({**config(files, base, work / "out", opts.rows), **num_proc, "data_cache": False})
        (cold_real, cpu_real), _ = timed(prepare_sft_data, uncached, real)
        floor_real = tokenizer_floor(real, files)
    dataset = variants[0]
    n_rows_in = sum(s["available"] for s in report.values())

    bs = cfg.training.per_device_train_batch_size
    frac_trl, padded = batch_fraction(dataset, collator(tok, "padded"), bs, tok.pad_token_id, 2000)
    frac_kotune, flat = batch_fraction(dataset, collator(tok, "padding_free"), bs, tok.pad_token_id, 2000)
    speed_trl = train_speed(base, padded, opts.steps)
    speed_kotune = train_speed(base, flat, opts.steps)

    from kotune.data.encode_map import auto_num_proc

    procs_label = (f"dataset_num_proc={opts.num_proc}" if opts.num_proc else
                   f"default ({auto_num_proc(opts.rows, None)} processes)")
    rows = [
        ("rows generated / examples kept", f"{n_rows_in:,} / {len(dataset):,}", ""),
        ("preprocessing, cold, dataset_num_proc=1 (s wall / s CPU)", f"{cold1:.1f} / {cpu1:.1f}", "baseline"),
        (f"preprocessing, cold, {procs_label} (s wall / s CPU)",
         f"{cold:.1f} / {cpu:.1f}", f"{cold1 / cold:.2f}× the speed of one process, {n_rows_in / cold:,.0f} rows/s"),
        ("preprocessing, from cache (s)", f"{warm:.2f}", f"{cold / warm:.0f}× faster than cold"),
        ("the Rust tokenizer alone on the rows' text, every core (s)", f"{floor:.1f}",
         f"{floor / cold:.0%} of the cold {procs_label.split(' (')[0]} run"),
        *([(f"Qwen2's real vocabulary: preprocessing, cold, {procs_label} (s wall / s CPU)",
            f"{cold_real:.1f} / {cpu_real:.1f}", f"tokenizer alone {floor_real:.1f} s ({floor_real / cold_real:.0%})")]
          if real is not None else []),
        ("useful-token fraction, TRL default padded batches", f"{frac_trl:.3f}", "baseline"),
        ("useful-token fraction, kotune packing: true", f"{frac_kotune:.3f}", f"{frac_kotune / frac_trl:.2f}×"),
        ("train useful tokens/s, TRL default padded", f"{speed_trl:,.0f}", "baseline"),
        ("train useful tokens/s, kotune packing: true", f"{speed_kotune:,.0f}", f"{speed_kotune / speed_trl:.2f}×"),
    ]
    width = max(len(r[0]) for r in rows)
    table = "\n".join([f"| {'measure':{width}s} | value | vs baseline |", f"|{'-' * (width + 2)}|---|---|"]
                      + [f"| {a:{width}s} | {b} | {c} |" for a, b, c in rows])
    print(table)
    if opts.write:
        write_results("packing", table, " ".join(["python bench/packing.py"] + sys.argv[1:]).replace(" --write", ""))
    return 0


def write_results(section: str, table: str, command: str) -> None:
    """Replace (or add) this benchmark's section in bench/RESULTS.md."""
    import platform

    path = ROOT / "bench" / "RESULTS.md"
    text = path.read_text(encoding="utf-8") if path.is_file() else "# Benchmark results\n"
    start, end = f"<!-- {section}:start -->", f"<!-- {section}:end -->"
    cpu = platform.processor() or platform.machine()
    body = (f"{start}\n## {section}\n\nReproduce: `HF_HUB_OFFLINE=1 .venv/bin/{command}` "
            f"({os.cpu_count()} cores, {cpu}, {time.strftime('%Y-%m-%d')}, load average {os.getloadavg()[0]:.1f} "
            f"when written)\n\n{table}\n{end}")
    if start in text:
        text = text[: text.index(start)] + body + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + body + "\n"
    path.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
