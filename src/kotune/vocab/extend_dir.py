"""`kotune vocab extend`'s output folder: the extended tokenizer, and, when the base folder holds a model, the model
with its new embedding rows (`kotune.vocab.model_rows.extend_model`), plus kotune_vocab.json.

The folder is built beside --out and renamed into place (`kotune.atomic_dir`), so a failed extension leaves
nothing. An --out that is, holds or lies inside the base is refused, and so is an existing non-empty --out unless
--overwrite is given and an earlier `kotune vocab extend` wrote it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import logging
from pathlib import Path

from kotune.atomic_dir import check_out, staged_dir
from kotune.errors import KotuneError
from kotune.models.loading import ensure_pad_token
from kotune.vocab.extend import extend_tokenizer, extended_sentencepiece_model, load_base_tokenizer
from kotune.vocab.pieces import base_kind
from kotune.vocab.token_file import read_tokens

logger = logging.getLogger(__name__)

INFO_FILE = "kotune_vocab.json"  # what the extension did (kotune.vocab.stages.RECORD: the staged training reads it)
MODEL_ROWS = "kotune.vocab.model_rows"  # by name: the embedding-row module is optional for a tokenizer-only run
WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
PROBE = "대한민국의 수도는 서울입니다. 법원은 피고인의 항소를 기각하였다. The court dismissed the appeal; x = f(3) + 1"


def holds_model(path: Path) -> bool:
    return (path / "config.json").is_file() and any((path / name).is_file() for name in WEIGHTS)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def local_base(name: str) -> Path:
    """A local folder for --base: the folder itself, or a Hub id's snapshot (downloaded unless HF_HUB_OFFLINE=1 and
    it is cached); the extension reads it and writes elsewhere."""
    if Path(name).expanduser().is_dir():
        return Path(name).expanduser()
    if Path(name).exists() or name.count("/") != 1:
        raise KotuneError(f"--base '{name}' is neither a model/tokenizer folder nor a Hub id (org/name)")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name))
    except Exception as err:  # offline and not cached, unknown id, no access: one message
        raise KotuneError(f"--base '{name}': not a local folder, and the Hub snapshot could not be fetched "
                          f"({type(err).__name__}: {str(err).splitlines()[0][:160]}); download it and give the folder"
                          ) from None


def write_extension(base: str | Path, tokens_file: str | Path, out: str | Path, init: str = "eeve",
                    overwrite: bool = False) -> dict:
    """Extend the base folder's tokenizer (and model) with the token list; returns what kotune_vocab.json records."""
    base, out, tokens_file = local_base(str(base)), Path(out), Path(tokens_file)
    check_out(out, {"base dir": base}, overwrite, INFO_FILE, "kotune vocab extend")
    tokens = read_tokens(tokens_file)
    base_tok = load_base_tokenizer(base)
    kind = base_kind(base_tok.backend_tokenizer)
    tokenizer = extend_tokenizer(base_tok, tokens)
    ensure_pad_token(tokenizer)  # else training adds <|pad|> later, one row past what kotune_vocab.json records
    old_size = len(base_tok)
    with_model = holds_model(base)
    rows_module = importlib.util.find_spec(MODEL_ROWS) is not None
    sp_model = base / "tokenizer.model"
    info = {
        "base": str(base.resolve()), "kind": kind, "old_vocab_size": old_size, "new_vocab_size": len(tokenizer),
        "new_tokens": len(tokenizer) - old_size, "merges": len(tokens), "new_ids": [old_size, len(tokenizer) - 1],
        "pad_token": tokenizer.pad_token,
        "tokens_file": str(tokens_file.resolve()), "tokens_sha256": sha256(tokens_file),
        "mechanism": ("BPE vocabulary entries + merges before the base's syllable joins (Korean-first; no added tokens)"
                      if kind == "byte_bpe" else "BPE vocabulary entries + merges after the base's (no added tokens)"),
        "sentencepiece_model": kind == "sentencepiece" and sp_model.is_file(),
    }
    with staged_dir(out) as tmp:
        if with_model and rows_module:
            info["model"] = importlib.import_module(MODEL_ROWS).extend_model(str(base), tokenizer, str(tmp), init)
        else:
            tokenizer.save_pretrained(tmp)
            if with_model:
                info["model"] = None
                info["note"] = (f"tokenizer only: {MODEL_ROWS} is not installed, so the model's embedding rows were "
                                "not resized; resize and initialise them before training")
                logger.warning("vocab: %s", info["note"])
        if info["sentencepiece_model"]:
            (tmp / "tokenizer.model").write_bytes(extended_sentencepiece_model(sp_model, tokenizer, old_size))
        elif kind == "sentencepiece":
            logger.warning("vocab: %s has no tokenizer.model: a GGUF export reads tokenizer.json alone, without "
                           "SentencePiece's scores", base)
        check_written(tmp, tokenizer)
        existing = json.loads((tmp / INFO_FILE).read_text(encoding="utf-8")) if (tmp / INFO_FILE).is_file() else {}
        record = {**existing, "tokenizer": {k: v for k, v in info.items() if k != "model"}} if existing else info
        (tmp / INFO_FILE).write_text(json.dumps(record, indent=2, ensure_ascii=False), encoding="utf-8")
    logger.info("vocab: %s: %d → %d tokens (%d new, ids %d–%d)%s", out, old_size, len(tokenizer),
                len(tokenizer) - old_size, old_size, len(tokenizer) - 1,
                " with the model's rows" if info.get("model") else "")
    return info


def check_written(folder: Path, tokenizer) -> None:
    """The saved folder loads as the tokenizer built in memory (same ids on Korean and English), so a file that
    another loader prefers (tokenizer.model over tokenizer.json) cannot disagree with it."""
    again = load_base_tokenizer(folder)
    if len(again) != len(tokenizer) or again(PROBE)["input_ids"] != tokenizer(PROBE)["input_ids"]:
        raise KotuneError(f"the extended tokenizer written to {folder} does not load back as built ({len(again)} vs "
                          f"{len(tokenizer)} tokens); nothing was written")
