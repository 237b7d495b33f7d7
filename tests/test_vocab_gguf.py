"""Issue 26: a base whose vocabulary `kotune vocab extend` grew still exports to GGUF, and llama.cpp tokenizes text
as transformers does. For Llama-3's byte-level BPE and Mistral-7B v1's SentencePiece: a tiny random model on the
real vocabulary → `kotune vocab build` (400 tokens from the bench's Korean text) → `kotune vocab extend` →
`kotune export --gguf` (f16) → llama.cpp's tokenizer (vocab only) on the held-out Korean paragraphs and the English
and code texts gives transformers' ids, id for id. Slow (~20-40 s a tokenizer on 2 CPU cores); needs
llama-cpp-python (`pip install -e .[gguf]`)."""

from __future__ import annotations

import pytest

from conftest import REPO
from test_korean_base_path import base_model, build_and_extend, kotune
from test_vocab import MISTRAL_TEMPLATE

pytestmark = pytest.mark.slow

HELDOUT = REPO / "bench" / "data" / "korean_heldout.txt"
ENGLISH_CODE = REPO / "bench" / "data" / "english_code.txt"


def texts() -> list[str]:
    """Every line of the held-out Korean and English/code files, and the code file whole (newlines, indents)."""
    from kotune.vocab.corpus import read_texts

    whole = ENGLISH_CODE.read_text(encoding="utf-8")
    return [*read_texts([str(HELDOUT)]), *read_texts([str(ENGLISH_CODE)]), whole]


def sentencepiece_ids(folder):
    """SentencePiece's own encoder on the folder's (extended) tokenizer.model: what llama.cpp's SPM tokenizer follows."""
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model")).encode


@pytest.mark.parametrize("family", ["mistral", "llama3"])
def test_llama_cpp_tokenizes_an_extended_vocabulary_as_transformers_does(family, tmp_path, capsys):
    """Each text alone and inside the chat template (special tokens parsed) gets transformers' ids from llama.cpp.

    Two SentencePiece details, both the base's and not the extension's:
    - the GGUF says `add_space_prefix: false` (kotune's convert shim, so `[INST]` after `<s>` is not `▁[INST]`), while
      transformers' Metaspace (prepend_scheme "first") puts `▁` before a text that starts the string; llama.cpp can
      say one or the other, so a lone text goes to llama.cpp with the space written out;
    - on runs of spaces (indented code) transformers' converted tokenizer.json merges differently from SentencePiece
      (`▁▁▁▁` + `return` against `▁▁▁` + `▁return`), on the unextended base alike; there llama.cpp must give
      SentencePiece's own ids."""
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama.cpp's tokenizer: `pip install -e .[gguf]`")
    from transformers import AutoTokenizer

    base = base_model(family, tmp_path / "base")
    if family == "mistral":  # the tiny base has none, and export embeds the run's chat template
        base_tok = AutoTokenizer.from_pretrained(base)
        base_tok.chat_template = MISTRAL_TEMPLATE
        base_tok.save_pretrained(base)
    out = tmp_path / "gguf"
    ext, record = build_and_extend(capsys, base, tmp_path)
    first, size = record["old_vocab_size"], record["new_vocab_size"]
    code, log = kotune(capsys, "export", ext, "--gguf", "--quant", "f16", "--out", out)
    assert code == 0, log[-2000:]

    tok, base_tok = AutoTokenizer.from_pretrained(ext), AutoTokenizer.from_pretrained(base)
    spm_ids = sentencepiece_ids(ext) if family == "mistral" else None
    lead = " " if family == "mistral" else ""
    llm = llama_cpp.Llama(model_path=str(out / "model-f16.gguf"), vocab_only=True, verbose=False)
    sample, differ, spaces, new = texts(), [], 0, 0
    try:
        assert llm.n_vocab() == len(tok) == size, (llm.n_vocab(), len(tok), size)
        for text in sample:
            hf = tok(text, add_special_tokens=False)["input_ids"]
            new += sum(i >= first for i in hf)
            cpp = llm.tokenize((lead + text).encode("utf-8"), add_bos=False, special=False)
            prompt = tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                             add_generation_prompt=True)
            in_template = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True) == \
                tok(prompt, add_special_tokens=False)["input_ids"]
            if cpp == hf and in_template:
                continue
            if spm_ids and "  " in text and cpp == spm_ids(text) and \
                    base_tok(text, add_special_tokens=False)["input_ids"] == hf:
                spaces += 1  # transformers' tokenizer.json departs from SentencePiece here, the base's too
                continue
            differ.append((text[:40], len(hf), len(cpp), in_template))
    finally:
        llm.close()
    with capsys.disabled():
        print(f"\n{family}: {len(sample) - len(differ) - spaces}/{len(sample)} texts id-identical in llama.cpp "
              f"(alone and in the chat template), {spaces} with space runs as SentencePiece cuts them; "
              f"{new} new-token ids used (vocab {first} → {size})")
    assert new > 0  # the Korean text exercises the extension, not just the base's tokens
    assert not differ, f"{len(differ)}/{len(sample)} texts tokenize differently: {differ}"
    assert spaces <= 3 and (family == "mistral" or spaces == 0), spaces
