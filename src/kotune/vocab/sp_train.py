"""New pieces for a SentencePiece base (Mistral/Llama-2, Gemma), learned with SentencePiece's own BPE trainer.

SentencePiece (and llama.cpp after it) merges any two adjacent pieces whose concatenation is in the vocabulary,
highest score first, whatever path built them; so a piece trained from scratch on the corpus fires in the extended
base as long as it splits into two entries the vocabulary has. On held-out Korean this beat BPE continued on the
base's own segmentation (`kotune.vocab.learn`) for Mistral, by 3 to 5 points of tokens per syllable at the same
count (bench/korean_vocab.py), so it is the route for SentencePiece bases when `sentencepiece` is installed.

Kept, in this order: the base's missing Hangul syllables seen `min_freq`+ times, most frequent first (transformers
runs the vocabulary as a BPE with byte fallback, where a character outside the vocabulary is three byte tokens and
joins no merge, so every character of a new piece must be an entry too); then the trained pieces in score order
that split into two known entries. Pieces the extended tokenizer then uses fewer than `min_freq` times on the corpus
are dropped (unless a kept piece is built from them), and what no longer splits into known entries without them;
the frequency recorded is that use count (a character's: its count in the corpus).
"""

from __future__ import annotations

import io
import logging
from collections import Counter

from kotune.vocab.pieces import SPACE, korean_token
from kotune.vocab.token_file import NewToken

logger = logging.getLogger(__name__)
MAX_SENTENCE = 1 << 16  # bytes; SentencePiece skips longer lines silently (its default is 4,192)


def trained_pieces(texts: list[str], size: int) -> list[str]:
    """A SentencePiece BPE model's pieces trained on `texts` (identity normalisation, as Mistral/Llama-2), in score
    order, characters last (as SentencePiece stores them)."""
    import sentencepiece as spm

    model = io.BytesIO()
    lines = [line for text in texts for line in text.splitlines() if line.strip()]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, model_type="bpe", vocab_size=max(size * 2, 1000),
        hard_vocab_limit=False, character_coverage=1.0, normalization_rule_name="identity", byte_fallback=False,
        max_sentence_length=MAX_SENTENCE, minloglevel=2)
    processor = spm.SentencePieceProcessor(model_proto=model.getvalue())
    return [processor.id_to_piece(i) for i in range(processor.get_piece_size())
            if not (processor.is_unknown(i) or processor.is_control(i) or processor.is_byte(i))]


def split_of(piece: str, known: set) -> tuple[str, str] | None:
    for i in range(1, len(piece)):
        if piece[:i] in known and piece[i:] in known:
            return piece[:i], piece[i:]
    return None


def select(chars: list[str], pieces: list[str], vocab: set, size: int, drop: set) -> list[NewToken]:
    """Characters, then pieces that split into known entries, up to `size`, leaving out `drop`."""
    known = set(vocab)
    kept = []
    for char in chars:
        if len(kept) < size and char not in drop:
            kept.append(NewToken(char, 0, text=char))
            known.add(char)
    for piece in pieces:
        if len(kept) >= size:
            break
        split = split_of(piece, known) if piece not in drop else None
        if split is not None:
            kept.append(NewToken(piece, 0, split[0], split[1], piece.replace(SPACE, " ")))
            known.add(piece)
    return kept


def sentencepiece_tokens(tokenizer, texts: list[str], size: int, min_freq: int,
                         hangul_only: bool) -> tuple[list[NewToken], int, int]:
    """(new tokens with their use counts, corpus tokens before, after) for a SentencePiece base."""
    from kotune.vocab.extend import extend_tokenizer

    vocab = set(tokenizer.backend_tokenizer.get_vocab(with_added_tokens=True))
    counts = Counter(c for text in texts for c in text)
    chars = sorted((c for c, n in counts.items() if n >= min_freq and c not in vocab and korean_token(c, hangul_only)),
                   key=lambda c: (-counts[c], c))
    pieces = [p for p in trained_pieces(texts, size) if len(p) > 1 and p not in vocab
              and korean_token(p.replace(SPACE, " "), hangul_only) and SPACE not in p[1:]]
    before = sum(map(len, tokenizer(texts, add_special_tokens=False)["input_ids"]))
    drop: set = set()
    for _ in range(4):  # dropping a rare piece can leave others unused or unreachable: a few rounds settle it
        kept = select(chars, pieces, vocab, size, drop)
        if not kept:
            return [], before, before
        new = extend_tokenizer(tokenizer, kept)
        ids = new(texts, add_special_tokens=False)["input_ids"]
        first = len(tokenizer)
        used = Counter(i for row in ids for i in row if i >= first)
        parts = {side for t in kept for side in (t.left, t.right)}
        rare = {t.token for n, t in enumerate(kept) if t.is_merge and used[first + n] < min_freq
                and t.token not in parts}
        if not rare:
            break
        drop |= rare
    tokens = [NewToken(t.token, used[first + n] if t.is_merge else counts[t.token], t.left, t.right, t.text)
              for n, t in enumerate(kept)]
    logger.info("vocab: SentencePiece trainer: %d characters and %d pieces kept (%d dropped as used under %d times)",
                sum(not t.is_merge for t in tokens), sum(t.is_merge for t in tokens), len(drop), min_freq)
    return tokens, before, sum(map(len, ids))
