"""Load a run dir (adapter, merged or full model) as it was trained.

An adapter trained on a 4-bit or 8-bit base is put back on that base quantized exactly as in training, then
dequantized: the weights the adapter learned against, in a plain dtype that can be merged, saved and reloaded.
"""

from __future__ import annotations

import logging
from dataclasses import fields
from pathlib import Path

import torch

from kotune.errors import KotuneError

logger = logging.getLogger(__name__)

MAX_CHAIN = 8  # adapters whose base is itself an adapter dir; deeper than this is a loop


def run_kind(run_dir: str | Path) -> str:
    """'adapter' (adapter_config.json) or 'model' (config.json); a clear error for anything else."""
    run = Path(run_dir)
    if not run.exists():
        raise KotuneError(f"'{run_dir}' does not exist")
    if not run.is_dir():
        raise KotuneError(f"'{run_dir}' is not a directory")
    if (run / "adapter_config.json").is_file():
        return "adapter"
    if (run / "config.json").is_file():
        return "model"
    raise KotuneError(f"'{run_dir}' holds neither an adapter (adapter_config.json) nor a model (config.json)")


def trained_model_args(run_dir: str | Path):
    """The model settings a run trained with (its kotune_config.yaml), kotune's defaults for anything unrecorded."""
    import yaml

    from kotune.config.library import KotuneModelConfig as cls
    path = Path(run_dir) / "kotune_config.yaml"
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else {}
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in (raw or {}).items() if k in names})


def saved_dtype(model_dir: str | Path) -> torch.dtype:
    """The dtype a model dir's config.json records (float32 when it records none)."""
    from transformers import AutoConfig

    try:
        dtype = getattr(AutoConfig.from_pretrained(model_dir), "dtype", None)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise KotuneError(f"cannot load the base '{model_dir}' named in adapter_config.json (a relative path resolves "
                          f"against the current directory): {first}") from None
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    return dtype if isinstance(dtype, torch.dtype) else torch.float32


def adapter_chain(run_dir: str | Path, base: str | Path | None = None) -> list[Path | str]:
    """[raw base, innermost adapter, ..., run_dir]: follows base_model_name_or_path while it names an adapter dir.
    `base` replaces the raw base (it moved since training)."""
    from kotune.models.adapter_dirs import adapter_base

    chain: list[Path | str] = [Path(run_dir)]
    while True:
        parent = adapter_base(str(chain[0]))
        if parent is None:
            if base is not None and len(chain) > 1:
                chain[0] = Path(base) if Path(base).is_dir() else str(base)
            return chain
        if len(chain) > MAX_CHAIN or any(Path(parent).resolve() == Path(p).resolve() for p in chain):
            raise KotuneError(f"'{run_dir}': adapters' base_model_name_or_path entries form a loop or a chain deeper "
                              f"than {MAX_CHAIN}: {[str(p) for p in chain]}")
        chain.insert(0, Path(parent) if Path(parent).is_dir() else parent)


def load_adapted(run_dir: str | Path, tokenizer, dtype: torch.dtype, base: str | Path | None = None):
    """A PeftModel: `run_dir`'s adapter on its base, the base loaded as the run trained it and in `dtype`.

    Quantized bases (load_in_4bit/8bit in the run's kotune_config.yaml) are loaded with the same bitsandbytes
    settings as training and dequantized to `dtype`, so the adapter sits on the weights it learned against.
    Adapters whose base is itself an adapter dir are merged in, innermost first. `base`: where the raw base
    lives now, if it moved since training.
    """
    from peft import PeftModel

    from kotune.models.loading import DTYPES, load_base

    chain = adapter_chain(run_dir, base)
    base, adapters = chain[0], chain[1:]
    args = trained_model_args(run_dir)
    quantized = bool(args.load_in_4bit or args.load_in_8bit)
    if not quantized:
        args.dtype = {v: k for k, v in DTYPES.items()}.get(dtype, "float32")
    try:
        model = load_base(str(base), args, _CpuOnly, tokenizer)
    except KotuneError as err:
        raise KotuneError(f"{run_dir}: cannot load the base named in adapter_config.json: {err}") from None
    if quantized:
        bits = f"4-bit {args.bnb_4bit_quant_type}" if args.load_in_4bit else "8-bit"
        model = model.dequantize(dtype=dtype)
        logger.info("base loaded %s as trained, dequantized to %s", bits, dtype)
    model = model.to(dtype)
    for i, adapter in enumerate(adapters):
        try:
            model = PeftModel.from_pretrained(model, str(adapter))
        except (OSError, ValueError, RuntimeError) as err:
            raise KotuneError(f"cannot load the adapter in '{adapter}': {err}") from None
        if i < len(adapters) - 1:
            logger.info("merging inner adapter %s (the base of %s)", adapter, adapters[i + 1])
            model = model.merge_and_unload(safe_merge=True)
    return model


class _CpuOnly:
    """The training-args view load_base needs: quantized layers live on the CPU here."""

    use_cpu = True


def load_run_tokenizer(run_dir: str | Path):
    """The tokenizer saved with the run (it carries the training chat template); for an adapter saved without one,
    the nearest one down its chain, with a warning."""
    from transformers import AutoTokenizer

    chain = adapter_chain(run_dir) if run_kind(run_dir) == "adapter" else [Path(run_dir)]
    for source in reversed(chain):
        try:
            tokenizer = AutoTokenizer.from_pretrained(source)
        except (OSError, ValueError):
            continue
        if source != chain[-1]:
            logger.warning("'%s' holds no tokenizer: using the one in '%s'", run_dir, source)
        return tokenizer
    raise KotuneError(f"no tokenizer found in '{run_dir}' or its base")


def load_for_inference(run_dir: str | Path, dtype: torch.dtype = torch.float32, device: str | None = None,
                       base: str | Path | None = None):
    """(model, tokenizer) from an output dir: a LoRA adapter on its base as trained (`base`: the base's new place,
    if it moved), a merged or a full model."""
    from transformers import AutoConfig

    from kotune.models.architectures import auto_class

    kind = run_kind(run_dir)
    tokenizer = load_run_tokenizer(run_dir)
    if kind == "adapter":
        model = load_adapted(run_dir, tokenizer, dtype, base)
    else:  # a remote-code base (EXAONE 3.5) trained with trust_remote_code: true loads with it again
        remote = trained_model_args(run_dir).trust_remote_code
        model = auto_class(AutoConfig.from_pretrained(run_dir, trust_remote_code=remote)).from_pretrained(
            run_dir, dtype=dtype, trust_remote_code=remote)
    if not tokenizer.chat_template:  # a model from elsewhere: the format `prompt_format: auto` would train with
        from kotune.data.prompt_formats import default_format, install_template

        fmt = default_format(model.config.model_type)
        logger.warning("'%s' has no chat template: using kotune's %s format", run_dir, fmt)
        install_template(tokenizer, fmt)
    if device:
        model = model.to(device)
    model.eval()
    return model, tokenizer
