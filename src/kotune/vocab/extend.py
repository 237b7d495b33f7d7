"""A base tokenizer extended with new Korean tokens, as real BPE entries: every old id keeps its meaning, the new
tokens take the ids after the old ones, and text without them tokenizes exactly as before.

Why vocabulary entries plus merges, not added tokens: the extended tokenizer stays the base's BPE model, so every
consumer runs the same algorithm on it.
- Byte-level BPE (Llama-3, Qwen2): each new token is one merge, placed after the base's character-building merges
  and before its merges that join whole syllables (`kotune.vocab.merge_order`: Korean text is cut by the new
  merges first, other text never meets them). llama.cpp's GGUF converter writes tokenizer.json's vocabulary and
  merges (`tokenizer.ggml.merges`) in that order and runs the same ranked merges. The pre-tokenizer is untouched, so the converter's pre-tokenizer check (a hash of its test string's ids;
  that string has no Hangul) still recognises the base.
- SentencePiece BPE (Mistral/Llama-2): SentencePiece, and llama.cpp after it, merge any two adjacent pieces that
  spell a vocabulary entry, highest score first; tokenizer.json spells that as one merge per split. A new piece gets
  a score below every old one and a merge for each of its splits, ranked in the same order, and the base's
  `tokenizer.model` is written with the new pieces (the GGUF converter reads that file; without it every score is
  -1000 and llama.cpp would merge in another order).
Added tokens (the other mechanism) are matched in the raw text before pre-tokenization, each library its own way
(transformers: leftmost-longest; llama.cpp: one token at a time, longest first, over the whole text), and Korean
tokens overlap a lot. Measured in bench/korean_vocab.py with the same token list: no more gain (Llama-3 -11.8%
against -12.7% with merges, Mistral -49.5% against -51.0% tokens per syllable), and llama.cpp's matching cuts 5 of
24 held-out Llama-3 texts differently from transformers.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from kotune.errors import KotuneError
from kotune.vocab.merge_order import ordered_merges
from kotune.vocab.pieces import base_kind, entry_text, korean_token, merges_of
from kotune.vocab.token_file import NewToken


def load_base_tokenizer(path: str | Path):
    """The base's tokenizer exactly as saved (no pad token added: the extension must not move any id)."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as err:
        raise KotuneError(f"--base '{path}': no tokenizer loads from it ({str(err).splitlines()[0][:200]})") from None
    if not getattr(tok, "is_fast", False) or getattr(tok, "backend_tokenizer", None) is None:
        raise KotuneError(f"--base '{path}': its tokenizer has no tokenizer.json backend (a `tokenizers` model); "
                          "`kotune vocab` extends BPE tokenizers of the `tokenizers` library")
    return tok


def check_tokens(tokens: list[NewToken], vocab: dict, kind: str) -> list[str]:
    """Every reason the list cannot extend this vocabulary, at once."""
    problems, known, listed = [], set(vocab), set()
    for t in tokens:
        text = entry_text(t.token, kind)
        if t.token in listed or (t.token in known and not (kind == "byte_bpe" and t.is_merge)):
            problems.append(f"{t.token!r} ({text}) is listed twice" if t.token in listed else
                            f"{t.token!r} ({text}) is already in the vocabulary")
        elif not korean_token(text, hangul_only=False):
            problems.append(f"{t.token!r} ({text}) holds no Hangul syllable or holds a space inside: new tokens must "
                            "be Korean, so that English and code tokenize as before")
        elif not t.is_merge and (kind == "byte_bpe" or len(t.token) != 1):
            problems.append(f"{t.token!r} ({text}) has no merge: only a single character of a SentencePiece base is "
                            "reached without one")
        elif t.is_merge and not (t.left in known and t.right in known):
            missing = [p for p in (t.left, t.right) if p not in known]
            problems.append(f"{t.token!r} ({text}) merges {' and '.join(map(repr, missing))}, which is neither in "
                            "the base nor earlier in the list (the list is in merge order)")
        known.add(t.token)
        listed.add(t.token)
    return problems


def sentencepiece_merges(old: dict, new: list[str]) -> list[tuple[str, str]]:
    """tokenizer.json merges that make a BPE model merge as SentencePiece does with the new pieces: first the old
    pieces that a new piece now helps spell (their scores are above every new piece's), then, piece by piece in
    score order, every split of each new piece into two entries."""
    final, fresh = set(old) | set(new), set(new)
    merges: dict[tuple[str, str], None] = {}
    longest = max(map(len, new), default=0) * 2
    for piece in sorted(old, key=old.get):
        if 1 < len(piece) <= longest and korean_token(piece.replace("\u2581", " "), hangul_only=False):
            for i in range(1, len(piece)):
                left, right = piece[:i], piece[i:]
                if (left in fresh or right in fresh) and left in final and right in final:
                    merges.setdefault((left, right))
    for piece in new:
        for i in range(1, len(piece)):
            left, right = piece[:i], piece[i:]
            if left in final and right in final:
                merges.setdefault((left, right))
    return list(merges)


def extend_tokenizer(base, tokens: list[NewToken]):
    """A copy of `base` (a tokenizer dir or a loaded fast tokenizer) with `tokens` appended, in order, as BPE
    entries with ids from len(base) on. Special tokens, added tokens and the chat template are the base's."""
    tok = load_base_tokenizer(base) if isinstance(base, (str, Path)) else copy.deepcopy(base)
    from tokenizers import Tokenizer

    backend = tok.backend_tokenizer
    kind = base_kind(backend)
    spec = json.loads(backend.to_str())
    model = spec["model"]
    existing = backend.get_vocab(with_added_tokens=True)
    problems = check_tokens(tokens, existing, kind)
    if problems:
        raise KotuneError(f"{len(problems)} of the {len(tokens)} new tokens cannot be added: " + "; ".join(problems[:8])
                          + (f" (and {len(problems) - 8} more)" if len(problems) > 8 else ""))
    old_vocab = dict(model["vocab"])
    for added in spec.get("added_tokens", []):
        # `tokenizers` numbers an added token that the model lacks after the model's entries, so the model's new
        # entries would push it along (Llama-3's GGUF tokenizer adds <|endoftext|> so): pin it in the model.
        model["vocab"].setdefault(added["content"], added["id"])
    next_id = max(existing.values()) + 1
    for t in tokens:
        if t.token not in existing:  # a Korean-first merge into an entry the base has keeps its id
            model["vocab"][t.token] = next_id
            next_id += 1
    merges = merges_of(model)
    if kind == "byte_bpe":
        merges = ordered_merges(merges, [(t.left, t.right) for t in tokens])
    else:
        merges += sentencepiece_merges(old_vocab, [t.token for t in tokens])
    as_strings = any(isinstance(m, str) for m in model.get("merges", []))
    model["merges"] = [f"{a} {b}" if as_strings else [a, b] for a, b in merges]
    tok._tokenizer = Tokenizer.from_str(json.dumps(spec, ensure_ascii=False))
    return tok


def new_entries(tokenizer, old_size: int) -> list[str]:
    """The entries with ids from `old_size` on, in id order (what an extension appended)."""
    vocab = tokenizer.backend_tokenizer.get_vocab(with_added_tokens=False)
    return [entry for entry, i in sorted(vocab.items(), key=lambda kv: kv[1]) if i >= old_size]


def extended_sentencepiece_model(model_file: Path, tokenizer, old_size: int) -> bytes:
    """The base's tokenizer.model with the new pieces appended (scores below every old piece, in merge order), so
    SentencePiece and llama.cpp's GGUF converter see the same vocabulary as tokenizer.json."""
    from sentencepiece import sentencepiece_model_pb2 as sp_model

    proto = sp_model.ModelProto()
    proto.ParseFromString(model_file.read_bytes())
    vocab = tokenizer.backend_tokenizer.get_vocab(with_added_tokens=True)
    by_id = {i: entry for entry, i in vocab.items()}
    for i in range(len(proto.pieces), old_size):  # tokens the base added after its model file: kept as user tokens
        proto.pieces.add(piece=by_id.get(i, f"<unused_{i}>"), score=0.0,
                         type=sp_model.ModelProto.SentencePiece.USER_DEFINED)
    # Below every regular piece. Runs of spaces sit at -1e9 so that they merge last; a score next to them would
    # lose its last digits in float32 and tie the new pieces, so the new pieces go between the two.
    lowest = min((p.score for p in proto.pieces if p.type == sp_model.ModelProto.SentencePiece.NORMAL
                  and p.score > -1e6), default=0.0)
    for offset, entry in enumerate(new_entries(tokenizer, old_size)):
        proto.pieces.add(piece=entry, score=lowest - 1.0 - offset, type=sp_model.ModelProto.SentencePiece.NORMAL)
    return proto.SerializeToString()
