"""A base model resized to an extended tokenizer, each new token's rows initialised as EEVE does.

EEVE (Kim et al., arXiv 2402.14714, "subword-based embedding initialization"): the base tokenizer splits the new
token's text into old tokens; the new input embedding is the mean of those tokens' input embeddings, and the new
output (lm_head) row is the output row of the first of them, so the model first predicts a new token where it
predicted the token it begins with. `init="mean"` takes the mean for both. A model whose head is tied to its
embeddings (Llama-3.2, Gemma) has one row per token: it gets the mean, and kotune_vocab.json says so.

The extended dir holds the model, the tokenizer and kotune_vocab.json (which ids are old, which new); `eeve_stage`
(kotune.vocab.freeze) reads that record to know which rows it may train.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from kotune.atomic_dir import check_out, staged_dir
from kotune.errors import KotuneError
from kotune.vocab.stages import RECORD

logger = logging.getLogger(__name__)

INITS = ("eeve", "mean")


def appended_ids(base_tok, tokenizer) -> range:
    """The ids `tokenizer` adds to `base_tok`: every old token keeps its id, the new ones follow the old ids."""
    old, new = base_tok.get_vocab(), tokenizer.get_vocab()
    moved = [f"{t!r}: {i} → {new.get(t)}" for t, i in old.items() if new.get(t) != i]
    if moved:
        raise KotuneError(f"the new tokenizer renumbers or drops {len(moved)} tokens of the base (e.g. "
                          f"{', '.join(moved[:3])}); the base's rows would then mean other tokens. Extend the base's "
                          "own tokenizer so that old ids keep their meaning and new tokens are appended")
    added = sorted(i for t, i in new.items() if t not in old)
    first = len(base_tok)
    if not added:
        raise KotuneError("the new tokenizer adds no token to the base's; nothing to extend")
    if added != list(range(first, first + len(added))):
        raise KotuneError(f"the new tokens' ids are not {first}..{first + len(added) - 1} (after the base's "
                          f"{first} tokens): got {added[:3]}...; append new tokens after the old ones")
    return range(first, first + len(added))


def old_pieces(base_tok, tokenizer, token_id: int) -> list[int]:
    """The base's ids for a new token's text.

    A token of the new tokenizer's model vocabulary (a BPE merge, a SentencePiece piece) is split by the base's
    model on its raw form ('▁서울' stays '▁서울', byte-level BPE keeps its byte alphabet), with no normaliser or
    pre-tokenizer in between. An added token is encoded as text; a leading piece that is only the tokenizer's
    dummy prefix ('▁', no letter of the token's text) is dropped, so the rule reads the token's own letters.
    """
    piece = tokenizer.convert_ids_to_tokens(token_id)
    backend = getattr(base_tok, "backend_tokenizer", None)
    if token_id not in tokenizer.added_tokens_decoder and backend is not None:
        ids = [t.id for t in backend.model.tokenize(piece)]
        if ids and max(ids) < len(base_tok):
            return ids
    text = str(tokenizer.added_tokens_decoder.get(token_id, "")) or tokenizer.decode([token_id])
    ids = base_tok(text, add_special_tokens=False)["input_ids"]
    while len(ids) > 1 and not text[:1].isspace() and not base_tok.decode(ids[:1]).strip():
        ids = ids[1:]
    if not ids:
        raise KotuneError(f"new token {piece!r} (id {token_id}) has no text the base tokenizer can split")
    return ids


def initialise_rows(model, base_tok, tokenizer, new_ids: range, init: str = "eeve") -> dict[int, list[int]]:
    """Write each new token's input row (mean of its pieces' rows) and output row (its first piece's row under
    `eeve`, the mean under `mean`) in place. Returns {new id: the base ids it was initialised from}."""
    import torch

    inputs = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    outputs = head.weight if head is not None else None
    tied = outputs is None or outputs.data_ptr() == inputs.data_ptr()
    sources = {}
    with torch.no_grad():
        for i in new_ids:
            ids = sources[i] = old_pieces(base_tok, tokenizer, i)
            index = torch.tensor(ids, device=inputs.device)
            inputs[i] = inputs[index].float().mean(0).to(inputs.dtype)
            if not tied:
                outputs[i] = (outputs[ids[0]] if init == "eeve"
                              else outputs[index].float().mean(0).to(outputs.dtype))
    return sources


def load_tokenizer_arg(tokenizer):
    if isinstance(tokenizer, (str, Path)):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(tokenizer))
    return tokenizer


def extend_model(base_dir: str, tokenizer, out_dir: str, init: str = "eeve") -> dict:
    """Resize the base in `base_dir` to `tokenizer` (an extended copy of its own tokenizer, or a dir holding one),
    initialise the new rows (`init`: eeve | mean) and write model, tokenizer and kotune_vocab.json to `out_dir`,
    whole or not at all. `out_dir` must be new or empty and apart from `base_dir`. Returns the record written."""
    from transformers import AutoConfig, AutoTokenizer

    from kotune.models.architectures import auto_class

    if init not in INITS:
        raise KotuneError(f"init: {init!r} is not one of {', '.join(INITS)} (eeve: input mean, output from the "
                          "first piece; mean: mean for both)")
    out = Path(out_dir)
    check_out(out, {"base model": Path(base_dir)}, overwrite=False, marker=RECORD, command="kotune vocab extend")
    tokenizer = load_tokenizer_arg(tokenizer)
    base_tok = AutoTokenizer.from_pretrained(base_dir)
    new_ids = appended_ids(base_tok, tokenizer)

    config = AutoConfig.from_pretrained(base_dir)
    model = auto_class(config).from_pretrained(base_dir, dtype="auto")
    rows = model.get_input_embeddings().weight.shape[0]
    if rows < len(base_tok):
        raise KotuneError(f"'{base_dir}': its embedding has {rows} rows for a tokenizer of {len(base_tok)} tokens; "
                          "point base_dir at the model and the tokenizer it was trained with")
    if len(tokenizer) > rows:  # a base padded past its tokenizer (Qwen) may hold the new ids already
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)  # every new row is written below
    head = model.get_output_embeddings()
    tied = head is None or head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    sources = initialise_rows(model, base_tok, tokenizer, new_ids, init)
    for i in list(new_ids)[:5]:
        logger.info("new token %d %r ← %s", i, tokenizer.convert_ids_to_tokens(i),
                    base_tok.convert_ids_to_tokens(sources[i]))
    record = {"base": str(base_dir), "old_vocab_size": len(base_tok), "new_vocab_size": len(tokenizer),
              "init": "mean (tied embeddings: one row per token)" if tied and init == "eeve" else init,
              "new_tokens": len(tokenizer) - len(base_tok), "rows": model.get_input_embeddings().weight.shape[0],
              "tied_embeddings": tied}
    with staged_dir(out) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / RECORD).write_text(json.dumps(record, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    logger.info("extended %s: %d → %d tokens (%d new, init %s) in %s", base_dir, record["old_vocab_size"],
                record["new_vocab_size"], record["new_tokens"], record["init"], out)
    return record
