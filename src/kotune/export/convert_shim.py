"""Runs llama.cpp's own `convert_hf_to_gguf.py` on a transformers-5 model folder, as a subprocess of `kotune export`.

llama.cpp's converter is written against transformers 4.x configs and a list of known BPE pre-tokenizers. Two
things differ for kotune's outputs, and both are bridged here without changing the converter's logic:
- transformers 5 stores rotary settings in `rope_parameters`; the converter still reads e.g. GPT-NeoX's `rotary_pct`;
- a BPE vocabulary it has not seen (a Korean BPE trained for the tests, or a base it does not list) is refused even
  when its split is one llama.cpp implements; then `--pre-tokenizer` (or the split read off tokenizer.json) names it;
- for SentencePiece vocabularies llama.cpp puts a space before text that follows a special token unless the file says
  `add_space_prefix: false`, while transformers' non-legacy Llama tokenizer does not: `[INST]` after `<s>` would
  become `▁[INST]` at inference. The flag is set from what transformers does with the run's own template.

Usage: python -m kotune.export.convert_shim CONVERTER_DIR PRE_TOKENIZER|- SUMMARY.json [converter args ...]
SUMMARY.json receives what the written file says of itself (architecture, pre-tokenizer, BOS, chat template).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

logger = logging.getLogger("kotune.export")

# transformers-5 `rope_parameters` key -> the legacy top-level key llama.cpp's converter reads, per model_type.
LEGACY_ROPE_KEYS = {"gpt_neox": {"partial_rotary_factor": "rotary_pct", "rope_theta": "rotary_emb_base"}}
# What transformers' modeling code fixes but the config does not say, spelled as the converter reads it, per
# model_type. K-EXAONE's router is always a sigmoid (ExaoneMoeTopkRouter); without the key the converter writes no
# expert_gating_func and llama.cpp refuses to load the file.
IMPLIED_HPARAMS = {"exaone_moe": {"scoring_func": "sigmoid"}}
# Rotary settings transformers defaults differently from the converter: Solar-Open rotates the whole head
# (SolarOpenRotaryEmbedding, factor 1.0) where the converter's GLM-4-MoE class assumes half.
IMPLIED_ROPE = {"solar_open": {"partial_rotary_factor": 1.0}}


def legacy_hparams(hparams: dict) -> dict:
    """Add the keys the converter reads that a transformers-5 config lacks: the pre-5 rotary keys, taken from
    `rope_parameters`, and what the modeling code implies; nothing is overwritten."""
    for key, value in IMPLIED_HPARAMS.get(hparams.get("model_type"), {}).items():
        hparams.setdefault(key, value)
    rope = hparams.get("rope_parameters") or {}
    if implied := IMPLIED_ROPE.get(hparams.get("model_type")):
        hparams["rope_parameters"] = rope = {**implied, **rope}
    for new, old in LEGACY_ROPE_KEYS.get(hparams.get("model_type"), {}).items():
        if old not in hparams and new in rope:
            hparams[old] = rope[new]
    return hparams


# The split regexes transformers writes for these tokenizer classes, and llama.cpp's names for the same split.
KNOWN_SPLITS = {
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+":
        "qwen2",
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+":
        "llama-bpe",
    # Qwen3.5's split (letters with their combining marks), which transformers' Qwen3_5Tokenizer writes
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+":
        "qwen35",
}


def known_pre_tokenizer(model_dir: Path) -> str | None:
    """llama.cpp's name for the tokenizer's split when it is one llama.cpp implements: GPT-2's byte-level regex, or a
    byte-level BPE behind Qwen2's or Llama-3's split regex."""
    path = model_dir / "tokenizer.json"
    if not path.is_file():
        return None
    pre = json.loads(path.read_text(encoding="utf-8")).get("pre_tokenizer") or {}
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True) and not pre.get("add_prefix_space", False):
        return "gpt-2"
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else []
    if len(steps) == 2 and steps[0].get("type") == "Split" and steps[1].get("type") == "ByteLevel" \
            and not steps[1].get("use_regex", True):
        return KNOWN_SPLITS.get(steps[0].get("pattern", {}).get("Regex"))
    return None


def space_after_special(model_dir: Path) -> bool | None:
    """Whether transformers puts `▁` before the text that follows the template's leading BOS; None when the
    template does not start with BOS (then llama.cpp's default, a space at the start of the text, matches)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    if not (tok.bos_token and tok.chat_template):
        return None
    text = tok.apply_chat_template([{"role": "user", "content": "가"}], tokenize=False, add_generation_prompt=True)
    if not text.startswith(tok.bos_token) or text[len(tok.bos_token):][:1].isspace():
        return None
    pieces = tok.convert_ids_to_tokens(tok(text, add_special_tokens=False)["input_ids"])
    return len(pieces) > 1 and pieces[1].startswith("\u2581")


def patch(pre_tokenizer: str | None) -> None:
    from conversion import base

    # transformers drops a checkpoint's multi-token-prediction / NextN draft layers on load (Qwen3.5's `mtp.*`,
    # DeepSeek-V3's extra layer), so kotune's outputs never hold them: convert without them, as `--no-mtp` does
    # (Qwen3.5's converter otherwise stops on an assertion when the config names none)
    base.ModelBase.no_mtp = True

    prepare = base.TextModel.prepare_metadata

    def prepare_metadata(self, vocab_only: bool):
        prepare(self, vocab_only)
        written = self.gguf_writer.kv_data[0].get("tokenizer.ggml.model")
        if written is not None and written.value == "llama" and (prefix := space_after_special(Path(self.dir_model))) is not None:
            self.gguf_writer.add_add_space_prefix(prefix)

    base.TextModel.prepare_metadata = prepare_metadata

    load = base.ModelBase.load_hparams
    base.ModelBase.load_hparams = staticmethod(lambda *a, **k: legacy_hparams(load(*a, **k)))
    recognise = base.TextModel.get_vocab_base_pre

    def get_vocab_base_pre(self, tokenizer) -> str:
        try:
            return recognise(self, tokenizer)
        except NotImplementedError:
            name = pre_tokenizer or known_pre_tokenizer(Path(self.dir_model))
            if name is None:
                raise SystemExit("kotune export: llama.cpp does not know this BPE tokenizer's pre-tokenizer. Pass "
                                 "--pre-tokenizer NAME (llama.cpp's name for the base's split, e.g. gpt-2, llama-bpe, "
                                 "qwen2); a wrong name makes llama.cpp tokenize text differently from transformers")
            logger.warning("llama.cpp does not list this BPE vocabulary; using pre-tokenizer '%s'", name)
            return name

    base.TextModel.get_vocab_base_pre = get_vocab_base_pre


def summary(path: str) -> dict:
    """The GGUF's own metadata, read back with the converter's gguf-py."""
    import gguf

    reader = gguf.GGUFReader(path)

    def value(key):
        field = reader.fields.get(key)
        return None if field is None else field.contents()

    arch = value("general.architecture")
    return {"architecture": arch, "pre_tokenizer": value("tokenizer.ggml.pre"),
            "add_bos_token": bool(value("tokenizer.ggml.add_bos_token")),
            "chat_template": value("tokenizer.chat_template"), "tensors": len(reader.tensors),
            "file_type": value("general.file_type")}


def main() -> None:
    converter_dir, pre_tokenizer, summary_path, *args = sys.argv[1:]
    sys.path[:0] = [converter_dir, str(Path(converter_dir) / "gguf-py")]
    sys.argv = [str(Path(converter_dir) / "convert_hf_to_gguf.py"), *args]
    patch(None if pre_tokenizer == "-" else pre_tokenizer)
    import convert_hf_to_gguf

    convert_hf_to_gguf.main()
    outfile = args[args.index("--outfile") + 1]
    Path(summary_path).write_text(json.dumps(summary(outfile), ensure_ascii=False, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
