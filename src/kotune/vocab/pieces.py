"""What a base tokenizer is made of, seen from the vocabulary extension: its kind, the strings its model works on,
and the readable text of a vocabulary entry. A leaf (tokenizers only), shared by `learn`, `extend` and the report.

Two kinds of base are extended, both BPE models in the `tokenizers` library:
- `byte_bpe`: byte-level BPE (Llama-3, Qwen2, GPT-2 style). Entries are byte strings in the GPT-2 byte alphabet
  (`Ġ` is a space); the regex pre-tokenizer splits text into words first.
- `sentencepiece`: SentencePiece BPE with byte fallback (Mistral/Llama-2, Gemma). Entries are text with `▁` for a
  space; characters outside the vocabulary fall back to `<0xNN>` byte tokens.

>>> byte_text("ĠìĦľìļ¸")
' 서울'
>>> byte_text("ìĦ") is None  # half a syllable: not text
True
>>> sp_words("▁서울은▁대한민국의▁수도")
['▁서울은', '▁대한민국의', '▁수도']
"""

from __future__ import annotations

import json
import re
from functools import lru_cache

from kotune.errors import KotuneError

SPACE = "\u2581"  # SentencePiece's ▁
BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")
HANGUL = re.compile(r"[\uac00-\ud7a3]")
SP_WORD = re.compile(f"{SPACE}?[^{SPACE}]+|{SPACE}")


@lru_cache(maxsize=1)
def byte_decoder() -> dict[str, int]:
    """GPT-2's byte alphabet, reversed: the character a byte-level BPE writes for each byte → that byte."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = list(printable), 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


def byte_text(entry: str) -> str | None:
    """The UTF-8 text of a byte-level entry, or None when it is not whole characters (a split syllable)."""
    table = byte_decoder()
    try:
        return bytes(table[c] for c in entry).decode("utf-8")
    except (KeyError, UnicodeDecodeError):
        return None


def sp_words(text: str) -> list[str]:
    """A SentencePiece text cut where SentencePiece's trainer cuts it (`split_by_whitespace`): each ▁ starts a word."""
    return SP_WORD.findall(text)


def base_kind(backend) -> str:
    """'byte_bpe' or 'sentencepiece' for a `tokenizers.Tokenizer`; anything else is refused with the reason."""
    spec = json.loads(backend.to_str())
    model = spec.get("model") or {}
    text = json.dumps({k: spec.get(k) for k in ("normalizer", "pre_tokenizer", "decoder")}, ensure_ascii=False)
    if model.get("type") != "BPE":
        raise KotuneError(f"this base's tokenizer is a {model.get('type')} model; `kotune vocab` extends BPE "
                          "tokenizers only (byte-level BPE like Llama-3/Qwen, SentencePiece BPE like Mistral/Llama-2/"
                          "Gemma). A Unigram or WordPiece vocabulary cannot gain merges")
    if model.get("continuing_subword_prefix") or model.get("end_of_word_suffix") or model.get("dropout"):
        raise KotuneError("this base's BPE uses a subword prefix/suffix or dropout; `kotune vocab` does not extend "
                          "such a vocabulary")
    if '"ByteLevel"' in text:
        return "byte_bpe"
    if model.get("byte_fallback") and SPACE in text:
        return "sentencepiece"
    raise KotuneError("this base's BPE is neither byte-level (Llama-3/Qwen style) nor SentencePiece with byte "
                      "fallback (Mistral/Llama-2/Gemma style); `kotune vocab` extends only those two, whose Korean "
                      "text always tokenizes (no <unk>)")


def entry_text(entry: str, kind: str) -> str | None:
    """The readable text of a vocabulary entry (a space where the base writes Ġ or ▁); None for a part of a
    character or a byte token."""
    if kind == "byte_bpe":
        return byte_text(entry)
    if BYTE_PIECE.fullmatch(entry):
        return None
    return entry.replace(SPACE, " ")


def merges_of(model: dict) -> list[tuple[str, str]]:
    """A BPE model's merges as pairs, whichever of the two layouts tokenizer.json uses ("a b" or ["a", "b"])."""
    return [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model.get("merges", [])]


def korean_token(text: str | None, hangul_only: bool) -> bool:
    """Whether a new token with this text may be added: it holds a Hangul syllable (so text without Hangul, English
    and code included, never meets a new merge), and with `hangul_only` it is nothing but syllables after an
    optional leading space."""
    if not text or not HANGUL.search(text):
        return False
    body = text[1:] if text.startswith(" ") else text
    if hangul_only:
        return len(HANGUL.findall(body)) == len(body)
    return not any(c.isspace() for c in body)
