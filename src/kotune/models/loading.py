"""Load a base: its config, a tokenizer whose pad differs from EOS, and the weights (quantized if asked).

The family-specific parts (LoRA targets, default prompt format) come from `kotune.models.architectures`;
quantization and adapters have their own modules.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from kotune.errors import KotuneError
from kotune.config.library import quantization_config
from kotune.models import moe
from kotune.models.architectures import auto_class
from kotune.models.lora import attach_lora
from kotune.models.quantization import disable_cpu_bf16_repack

logger = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
KOREAN_PROBE = "대한민국의 수도는 서울입니다. 한글은 세종대왕이 만들었습니다."
MIN_PROBE_IDS = 4  # the largest vocabularies (Gemma's 262K) still need more than this for the probe
MIN_VOCAB = 100
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "merges.txt", "tokenizer_config.json",
                   "special_tokens_map.json", "spiece.model", "vocab.txt")


def hub_error(name: str, err: Exception) -> KotuneError:
    if Path(name).expanduser().exists():
        return KotuneError(f"model_name_or_path: cannot load '{name}': {err}")
    return KotuneError(
        f"model_name_or_path: '{name}' is not a local directory and could not be fetched from the Hub "
        f"({type(err).__name__}). Check the name, or download it first and point model_name_or_path at the folder."
    )


def load_model_config(name: str, trust_remote_code: bool = False, revision: str = "main"):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code, revision=revision)
    except (OSError, ValueError) as err:
        raise hub_error(name, err) from None


def load_tokenizer(name: str, trust_remote_code: bool = False, revision: str = "main"):
    """Tokenizer with a pad token distinct from EOS (otherwise EOS is masked and the model never learns to stop)."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code, revision=revision)
    except (OSError, ValueError) as err:
        raise hub_error(name, err) from None
    check_encodes_korean(tok, name)
    if tok.eos_token_id is None:
        raise KotuneError(f"the tokenizer of '{name}' has no EOS token; set eos_token in its tokenizer_config.json")
    ensure_pad_token(tok)
    tok.padding_side = "right"
    return tok


def ensure_pad_token(tok) -> None:
    """A pad token distinct from EOS: UNK when there is one, else a new `<|pad|>` (one more embedding row; `kotune
    vocab extend` adds it with the new tokens, so the extension record counts it)."""
    if tok.pad_token_id is None or tok.pad_token_id == tok.eos_token_id:
        if tok.unk_token_id is not None and tok.unk_token_id != tok.eos_token_id:
            tok.pad_token = tok.unk_token
            logger.info("tokenizer has no pad token distinct from EOS: pad = %s (id %d)", tok.pad_token, tok.pad_token_id)
        else:
            tok.add_special_tokens({"pad_token": "<|pad|>"})
            logger.info("tokenizer has no pad token distinct from EOS: added <|pad|> (id %d)", tok.pad_token_id)


def check_encodes_korean(tokenizer, name: str) -> None:
    """Refuse a tokenizer that cannot carry Korean text before any data is encoded with it. A model dir without
    tokenizer files still loads in transformers 5.x, as a 2-token tokenizer: every row encodes to nothing and the run
    logs loss 0.0. A tokenizer that maps Hangul to <unk> fails the same way, more quietly."""
    ids = tokenizer(KOREAN_PROBE, add_special_tokens=False)["input_ids"]
    back = tokenizer.decode(ids, skip_special_tokens=True)
    faults = []
    if len(tokenizer) < MIN_VOCAB:
        faults.append(f"its vocabulary has {len(tokenizer)} tokens")
    if len(ids) < MIN_PROBE_IDS:
        faults.append(f"the Korean sentence {KOREAN_PROBE!r} encodes to {len(ids)} ids")
    elif "".join(back.split()) != "".join(KOREAN_PROBE.split()):
        faults.append(f"the Korean sentence {KOREAN_PROBE!r} decodes back as {back!r}")
    if not faults:
        return
    where = Path(name).expanduser()
    present = [f for f in TOKENIZER_FILES if (where / f).is_file()] if where.is_dir() else None
    files = ("" if present is None else
             f" '{name}' has no tokenizer files ({', '.join(TOKENIZER_FILES[:4])}, ...)." if not present else
             f" Its tokenizer files: {', '.join(present)}.")
    raise KotuneError(f"the tokenizer of '{name}' cannot encode Korean text: {'; '.join(faults)}.{files} Copy the "
                      "base model's tokenizer files (tokenizer.json, tokenizer_config.json, special_tokens_map.json, "
                      "or tokenizer.model) into that folder, or point model_name_or_path at a folder that has them")


def load_model(model_args, training_args, tokenizer, deepspeed_stage: int | None = None):
    """The base model, quantized if asked, with LoRA attached when `use_peft` is set."""
    model = load_base(model_args.model_name_or_path, model_args, training_args, tokenizer, deepspeed_stage)
    moe.use_router_aux_loss(model)
    if not model_args.use_peft:
        if training_args.gradient_checkpointing:
            model.config.use_cache = False
        return model
    return attach_lora(model, model_args, training_args)


def load_base(path: str, model_args, training_args, tokenizer, deepspeed_stage: int | None = None,
              reward_head: bool = False):
    """Weights from `path`, quantized per `model_args`, with the CPU 4-bit fix and the tokenizer's special tokens.
    `reward_head`: a sequence-classification model with one output (a reward model's score head, new if absent)."""
    from transformers import AutoModelForSequenceClassification

    moe.keep_native_targets()  # before any adapter is attached or loaded on this base (peft#3711)
    quant = quantization_config(model_args)
    dtype = model_args.dtype if model_args.dtype in (None, "auto") else DTYPES[model_args.dtype]
    kwargs = dict(
        dtype=dtype,
        trust_remote_code=model_args.trust_remote_code,
        revision=model_args.model_revision,
        attn_implementation=model_args.attn_implementation,
    )
    if quant is not None:
        kwargs["quantization_config"] = quant
        if deepspeed_stage != 3:  # peft#1550: ZeRO-3 places the shards itself
            kwargs["device_map"] = {"": local_device(training_args)}
    if reward_head:
        kwargs.update(num_labels=1, pad_token_id=tokenizer.pad_token_id)
    try:
        model_class = AutoModelForSequenceClassification if reward_head else auto_class(
            load_model_config(path, model_args.trust_remote_code, model_args.model_revision))
        model = model_class.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as err:
        raise hub_error(path, err) from None

    if quant is not None:
        moe.log_unquantized_experts(model)
    if not torch.cuda.is_available() and model_args.load_in_4bit:
        n = disable_cpu_bf16_repack(model)
        if n:
            logger.info("CPU 4-bit: AVX512-bf16 repack disabled on %d layers (it breaks LoRA gradients)", n)

    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
        logger.info("resized embeddings to %d for the added pad token", len(tokenizer))
    sync_special_tokens(model, tokenizer)
    return model


def sync_special_tokens(model, tokenizer) -> None:
    """Model config and generation config carry the tokenizer's EOS/pad/BOS, so generate() stops where training
    taught. The generation config keeps the base's list of EOS ids and adds the template's end-of-turn token(s)
    (Llama-3 stops on <|end_of_text|> and <|eot_id|>, Gemma on <eos> and <end_of_turn>)."""
    generation = getattr(model, "generation_config", None)
    base_eos = getattr(generation, "eos_token_id", None)
    for cfg in (model.config, generation):
        if cfg is None:
            continue
        cfg.eos_token_id = tokenizer.eos_token_id
        cfg.pad_token_id = tokenizer.pad_token_id
        if tokenizer.bos_token_id is not None:
            cfg.bos_token_id = tokenizer.bos_token_id
    if generation is not None:
        generation.eos_token_id = stop_ids(tokenizer, base_eos)


def stop_ids(tokenizer, also=None) -> int | list[int]:
    """The ids generation stops on: `also` (the base's EOS id or list), the tokenizer's EOS and the template's
    end-of-turn token(s); one int when there is just one."""
    from kotune.data.prompt_formats import end_of_turn_ids

    base = also if isinstance(also, list) else [also] if also is not None else []
    ids = list(dict.fromkeys([*base, tokenizer.eos_token_id, *end_of_turn_ids(tokenizer)]))
    ids = [i for i in ids if i is not None]
    return ids[0] if len(ids) == 1 else ids


def local_device(training_args) -> str:
    if training_args.use_cpu or not torch.cuda.is_available():
        return "cpu"
    return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
