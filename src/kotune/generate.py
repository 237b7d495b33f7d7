"""Load a run dir (adapter, merged or full model) as it was trained, and answer in the format it was trained with.

An adapter trained on a 4-bit or 8-bit base is put back on that base quantized exactly as in training, then
dequantized: the weights the adapter learned against, in a plain dtype that can be merged, saved and reloaded.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import fields
from pathlib import Path

import torch

from kotune.errors import KotuneError
from kotune.prompts import prompt_ids

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

    from kotune.config import _model_config_class

    cls = _model_config_class()
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
    from kotune.dpo_models import adapter_base

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

    from kotune.models import DTYPES, load_base

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
    from transformers import AutoModelForCausalLM

    kind = run_kind(run_dir)
    tokenizer = load_run_tokenizer(run_dir)
    if kind == "adapter":
        model = load_adapted(run_dir, tokenizer, dtype, base)
    else:
        model = AutoModelForCausalLM.from_pretrained(run_dir, dtype=dtype)
    if not tokenizer.chat_template:  # a model from elsewhere: the format `prompt_format: auto` would train with
        from kotune.prompts import DEFAULT_FORMAT, install_template

        fmt = DEFAULT_FORMAT.get(model.config.model_type, "komt")
        logger.warning("'%s' has no chat template: using kotune's %s format", run_dir, fmt)
        install_template(tokenizer, fmt)
    if device:
        model = model.to(device)
    model.eval()
    return model, tokenizer


@torch.no_grad()
def answer(model, tokenizer, question: str, max_new_tokens: int = 64, streamer=None, system: str | None = None,
           temperature: float = 0.0, top_p: float = 1.0) -> str:
    """One user turn (after an optional system message), greedy unless temperature > 0; stops at the EOS that
    training taught."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
    ids = prompt_ids(tokenizer, messages)
    input_ids = torch.tensor([ids], device=model.device)
    sampling = dict(do_sample=True, temperature=temperature, top_p=top_p) if temperature > 0 else dict(do_sample=False)
    out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=max_new_tokens,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, streamer=streamer,
                         **sampling)
    return tokenizer.decode(out[0, len(ids):], skip_special_tokens=True).strip()


class WordStreamer:
    """Streams an answer word by word as generate() produces it; the chunks join to exactly what answer() returns.

    Unlike transformers' TextStreamer it never re-decodes from a newline (SentencePiece would drop the space after
    it) and holds back surrounding whitespace, so streamed and non-streamed text are the same string.
    """

    def __init__(self, tokenizer, out=None):
        self.tokenizer, self.out = tokenizer, out
        self.ids: list[int] = []
        self.chunks: list[str] = []
        self.printed = ""
        self._prompt_seen = False

    def put(self, value) -> None:
        if not self._prompt_seen:  # generate() sends the prompt first
            self._prompt_seen = True
            return
        self.ids.extend(value.reshape(-1).tolist())
        text = self._text()
        cut = max(text.rfind(" "), text.rfind("\n"))
        self._emit(text[:cut].rstrip() if cut > 0 else "")

    def end(self) -> None:
        self._emit(self._text())
        if self.out is not None:
            self.out.write("\n")
            self.out.flush()

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    def _text(self) -> str:
        return self.tokenizer.decode(self.ids, skip_special_tokens=True).strip()

    def _emit(self, ready: str) -> None:
        if len(ready) <= len(self.printed) or not ready.startswith(self.printed):
            return
        chunk, self.printed = ready[len(self.printed):], ready
        self.chunks.append(chunk)
        if self.out is not None:
            self.out.write(chunk)
            self.out.flush()


def stdout_streamer(tokenizer) -> WordStreamer:
    return WordStreamer(tokenizer, out=sys.stdout)
