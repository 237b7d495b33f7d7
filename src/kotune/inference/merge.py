"""`kotune merge ADAPTER_DIR --out DIR [--dtype bf16]`: a LoRA run merged into its base, as one full HF model.

The output holds the merged weights, the run's tokenizer with its chat template, a generation_config whose EOS and
pad match the tokenizer, merge_info.json (what was merged, how, and the run's config and data report) and a model
card (README.md, kotune.model_card). It is written into a temporary dir next to
--out and renamed at the end, so a failed merge leaves nothing behind.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from kotune.atomic_dir import check_out, staged_dir
from kotune.errors import KotuneError

logger = logging.getLogger("kotune.export")

DTYPE_NAMES = {"bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16",
               "fp32": "float32", "float32": "float32"}
INFO_FILE = "merge_info.json"  # written into every merged model: --overwrite replaces only folders holding it
MAX_CHAIN = 8  # adapters on adapters; kotune.inference.loading refuses deeper chains


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="kotune merge",
        description="Merge a LoRA adapter run dir into its base: a full model that AutoModelForCausalLM loads, with "
                    "the run's tokenizer and chat template. A 4/8-bit-trained adapter is merged into its base "
                    "quantized as in training, then dequantized. An adapter whose base is another adapter dir is "
                    "merged as a chain.")
    parser.add_argument("adapter_dir", help="an SFT/DPO output dir holding adapter_config.json")
    parser.add_argument("--out", required=True, help="where the merged model goes: a new or empty folder, apart "
                                                     "from the adapter dir and its base")
    parser.add_argument("--dtype", choices=sorted(DTYPE_NAMES),
                        help="dtype of the merged weights (default: the base's saved dtype)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an --out that an earlier `kotune merge` wrote (it holds merge_info.json)")
    return parser.parse_args(argv)


def input_dirs(run_dir: Path) -> dict[str, Path]:
    """{what it is: local dir} of everything a run dir reads: the run, the adapters it chains through and the base,
    when that is a local folder (a relative base resolves against the current directory, as loading does). Read
    from adapter_config.json only: no heavy import."""
    from kotune.models.adapter_dirs import adapter_base

    found = {"adapter dir" if adapter_base(run_dir) else "run dir": run_dir}
    current = run_dir
    for depth in range(MAX_CHAIN):
        parent = adapter_base(current)
        if parent is None or not Path(parent).is_dir():
            break
        current = Path(parent)
        role = "base adapter dir" if adapter_base(current) else "base model dir"
        found[role if role not in found else f"{role} {depth + 1}"] = current
    return found


def check_paths(adapter_dir: Path, out: Path, overwrite: bool) -> None:
    """Every problem with the two paths before any weights load (the --out checks before torch is imported)."""
    if adapter_dir.is_dir():
        check_out(out, input_dirs(adapter_dir), overwrite, INFO_FILE, "kotune merge")
    from kotune.inference.loading import run_kind

    if run_kind(adapter_dir) == "model":
        raise KotuneError(f"'{adapter_dir}' is already a full model (config.json, no adapter_config.json): there is "
                          "nothing to merge; load it directly with AutoModelForCausalLM or `kotune chat`")


def merge(adapter_dir: str | Path, out: str | Path, dtype: str | None = None, overwrite: bool = False) -> Path:
    """Merge `adapter_dir` into its base and save the full model in `out`; returns `out`."""
    adapter_dir, out = Path(adapter_dir), Path(out)
    check_paths(adapter_dir, out, overwrite)
    import torch

    from kotune.inference.loading import adapter_chain, load_adapted, load_run_tokenizer, saved_dtype
    from kotune.models.loading import sync_special_tokens

    chain = adapter_chain(adapter_dir)
    target = getattr(torch, DTYPE_NAMES[dtype]) if dtype else saved_dtype(chain[0])
    logger.info("merging %s into %s as %s", " + ".join(str(p) for p in chain[1:]), chain[0], target)

    tokenizer = load_run_tokenizer(adapter_dir)  # carries the chat template training used
    merged = load_adapted(adapter_dir, tokenizer, target).merge_and_unload(safe_merge=True)
    sync_special_tokens(merged, tokenizer)
    merged.config.use_cache = True

    with staged_dir(out) as tmp:
        merged.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        merged.generation_config.save_pretrained(tmp)
        _write_info(tmp, chain, target)
        _write_card(tmp, tokenizer, out.name)
    logger.info("merged model saved in %s", out)
    return out


def _write_info(path: Path, chain: list, dtype) -> None:
    from kotune.inference.loading import trained_model_args
    from kotune.records import package_versions, write_json

    from kotune.model_card import run_facts

    args = trained_model_args(chain[-1])
    write_json(path / INFO_FILE, {
        "base": str(chain[0].resolve()) if isinstance(chain[0], Path) else chain[0],
        "adapters": [str(Path(p).resolve()) for p in chain[1:]],
        "dtype": str(dtype).removeprefix("torch."),
        "trained_quantization": "4-bit" if args.load_in_4bit else "8-bit" if args.load_in_8bit else None,
        "versions": package_versions(),
        "trained": run_facts(Path(chain[-1])),  # the run's config, data report and record: the card's inputs
    })


def _write_card(path: Path, tokenizer, name: str) -> None:
    """README.md of the merged model (kotune.model_card), from merge_info.json; a card that fails is logged."""
    from kotune.model_card import write_model_card

    try:
        write_model_card(path, tokenizer, name=name)
    except Exception as err:  # documentation: the merged weights are fine whatever happens here
        logger.warning("model card not written: %s: %s", type(err).__name__, err)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    from kotune.logs import setup_logging

    setup_logging()
    out = merge(args.adapter_dir, args.out, args.dtype, args.overwrite)
    print(f"merged model: {out}")
    return 0
