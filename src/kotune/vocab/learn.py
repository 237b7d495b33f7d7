"""Learn new Korean tokens for a base as BPE merges on top of the base's own pieces (byte-level bases, and
SentencePiece bases when `sentencepiece` is not installed; with it, `kotune.vocab.sp_train` trains them).

Every corpus word is first cut by the base tokenizer itself (its normalizer, pre-tokenizer and BPE model). New
tokens are then learned greedily, as BPE training does, but starting from those pieces: each step merges the most
frequent adjacent pair of pieces into one token, and the pairs it forms with its neighbours count from then on. So
a new token is always exactly one merge of two entries the base (or an earlier merge) has:
- byte-level bases (Korean-first BPE): a word starts as the base cuts it with only its character-building merges,
  and the new merges run before the base's syllable joins (`kotune.vocab.merge_order`). A merge may end in an entry
  the base already has (` 운영`); it keeps its id, and `size` counts only the entries that take a new one;
- SentencePiece bases without `sentencepiece`: the merges join what the base's segmentation left apart.
Text without Hangul never meets a new merge (every one holds a Hangul syllable), so it tokenizes as before.

SentencePiece bases (Mistral/Llama-2) spell most syllables as 3 byte-fallback tokens: such a syllable is a piece
that is not in the vocabulary yet. Adding it alone (a new single-character token) saves 2 tokens per occurrence
and competes with the merges on that saving; merges only join pieces that are in the vocabulary.

`min_freq` drops rare tokens (EEVE keeps only frequent ones); `hangul_only` keeps tokens that are nothing but
syllables after an optional leading space. By default a token may also hold punctuation or digits around Hangul.
"""

from __future__ import annotations

import heapq
import importlib.util
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass

from kotune.errors import KotuneError
from kotune.vocab.merge_order import character_model
from kotune.vocab.pieces import BYTE_PIECE, base_kind, entry_text, korean_token, sp_words
from kotune.vocab.token_file import NewToken

logger = logging.getLogger(__name__)


@dataclass
class Learned:
    """The tokens learned and what they do on the corpus they were learned from."""

    tokens: list[NewToken]
    kind: str
    method: str  # "Korean-first BPE" (byte-level), "continued BPE" or "SentencePiece trainer" (kotune.vocab.sp_train)
    words: int  # distinct words in the corpus
    corpus_tokens_before: int  # the corpus in the base's tokens
    corpus_tokens_after: int  # ... with the new tokens
    stopped: str  # why learning stopped: the size was reached, or no pair/character is frequent enough
    fresh: int  # tokens that take a new id (a Korean-first merge may end in an entry the base has)


def corpus_words(backend, kind: str, texts: list[str]) -> Counter:
    """word → count, cut the way the base tokenizer cuts text before its BPE model sees it."""
    normalizer, pre = backend.normalizer, backend.pre_tokenizer
    counts: Counter = Counter()
    for text in texts:
        text = normalizer.normalize_str(text) if normalizer is not None else text
        pieces = [p for p, _ in pre.pre_tokenize_str(text)] if pre is not None else [text]
        if kind == "sentencepiece":
            pieces = [w for p in pieces for w in sp_words(p)]
        counts.update(pieces)
    return counts


def base_pieces(model, word: str, kind: str) -> list[str]:
    """The base model's pieces for one word; for SentencePiece, a run of byte-fallback tokens becomes the
    characters it spells (pieces the vocabulary lacks)."""
    values = [t.value for t in model.tokenize(word)]
    if kind != "sentencepiece":
        return values
    out: list[str] = []
    run: list[str] = []
    for value in values + [""]:
        if BYTE_PIECE.fullmatch(value):
            run.append(value)
            continue
        if run:
            try:
                out += list(bytes(int(BYTE_PIECE.fullmatch(b).group(1), 16) for b in run).decode("utf-8"))
            except UnicodeDecodeError:
                out += run
            run = []
        if value:
            out.append(value)
    return out


class PairCounts:
    """Adjacent-pair counts over weighted words, with a lazy max-heap and a pair → words index."""

    def __init__(self, eligible):
        self.eligible = eligible
        self.count: Counter = Counter()
        self.where: dict = defaultdict(set)
        self.heap: list = []

    def update(self, word: list[str], index: int, weight: int) -> None:
        """Add (weight > 0) or remove (weight < 0) a word's pairs."""
        for pair in zip(word, word[1:]):
            if self.eligible(*pair):
                self.count[pair] += weight
                if weight > 0:
                    self.where[pair].add(index)
                heapq.heappush(self.heap, (-self.count[pair], pair))

    def best(self) -> tuple[tuple[str, str] | None, int]:
        while self.heap:
            negative, pair = self.heap[0]
            if self.count.get(pair, 0) == -negative and negative < 0 and self.eligible(*pair):
                return pair, -negative
            heapq.heappop(self.heap)
        return None, 0


def merge_word(word: list[str], pair: tuple[str, str]) -> list[str]:
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(word[i] + word[i + 1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out


def choose_method(kind: str, method: str) -> str:
    """'continued' or 'sentencepiece': `auto` trains SentencePiece bases with SentencePiece when it is installed."""
    if method == "auto":
        if kind != "sentencepiece":
            return "continued"
        if importlib.util.find_spec("sentencepiece") is None:
            logger.warning("vocab: `sentencepiece` is not installed: learning this SentencePiece base's pieces as "
                           "BPE merges continued on its own segmentation instead (pip install sentencepiece)")
            return "continued"
        return "sentencepiece"
    if method == "sentencepiece" and kind != "sentencepiece":
        raise KotuneError("the SentencePiece trainer is for SentencePiece bases; this base is byte-level BPE")
    return method


def learn_tokens(tokenizer, texts: list[str], size: int, min_freq: int = 2, hangul_only: bool = False,
                 method: str = "auto") -> Learned:
    """Up to `size` new tokens for `tokenizer` (a transformers fast tokenizer) from `texts`, most useful first.

    `method`: auto (SentencePiece's trainer for a SentencePiece base when installed, else continued BPE),
    continued, or sentencepiece."""
    backend = tokenizer.backend_tokenizer
    kind = base_kind(backend)
    method = choose_method(kind, method)
    counts = corpus_words(backend, kind, texts)
    if method == "sentencepiece":
        from kotune.vocab.sp_train import sentencepiece_tokens

        tokens, before, after = sentencepiece_tokens(tokenizer, texts, size, min_freq, hangul_only)
        stopped = "size" if len(tokens) >= size else f"no more pieces used {min_freq}+ times"
        return Learned(tokens, kind, "SentencePiece trainer", len(counts), before, after, stopped, len(tokens))
    vocab = set(backend.get_vocab(with_added_tokens=True))
    reuse = kind == "byte_bpe"  # Korean-first merges (kotune.vocab.merge_order) may end in an entry the base has
    start = character_model(backend) if reuse else backend.model
    words = [base_pieces(start, w, kind) for w in counts]
    weights = list(counts.values())
    added: set[str] = set()
    text_ok: dict[str, bool] = {}

    def known(piece: str) -> bool:
        return piece in vocab or piece in added

    def eligible(left: str, right: str) -> bool:
        merged = left + right
        if (merged in vocab and not reuse) or merged in added or not (known(left) and known(right)):
            return False
        if merged not in text_ok:
            text_ok[merged] = korean_token(entry_text(merged, kind), hangul_only)
        return text_ok[merged]

    def cost(piece: str) -> int:  # tokens a piece costs: a character outside the vocabulary is its UTF-8 bytes
        return 1 if known(piece) else len(piece.encode("utf-8"))

    before = sum(w * (len(backend.model.tokenize(word)) if reuse else sum(map(cost, base)))
                 for word, base, w in zip(counts, words, weights))
    pairs = PairCounts(eligible)
    chars: Counter = Counter()
    char_words: dict = defaultdict(set)
    for index, (word, weight) in enumerate(zip(words, weights)):
        pairs.update(word, index, weight)
        for piece in word:
            if not known(piece) and korean_token(piece, hangul_only):
                chars[piece] += weight
                char_words[piece].add(index)
    char_queue = sorted(chars, key=lambda c: (-(len(c.encode("utf-8")) - 1) * chars[c], c))
    tokens: list[NewToken] = []
    stopped, fresh = "size", 0  # fresh: tokens that take a new id
    while fresh < size:
        pair, frequency = pairs.best()
        char = char_queue[0] if char_queue else None
        char_saving = (len(char.encode("utf-8")) - 1) * chars[char] if char else 0
        if char is not None and chars[char] >= min_freq and char_saving >= frequency:
            char_queue.pop(0)
            for index in char_words[char]:  # its pairs become countable once the character is a token
                pairs.update(words[index], index, -weights[index])
            added.add(char)
            for index in char_words[char]:
                pairs.update(words[index], index, weights[index])
            tokens.append(NewToken(char, chars[char], text=char))
            fresh += 1
            continue
        if pair is None or frequency < min_freq:
            stopped = f"no pair or character occurs {min_freq}+ times"
            break
        merged = pair[0] + pair[1]
        added.add(merged)  # before the words are recounted: the pairs it forms with its neighbours count from now
        for index in list(pairs.where.pop(pair, ())):
            if pair not in zip(words[index], words[index][1:]):
                continue
            pairs.update(words[index], index, -weights[index])
            words[index] = merge_word(words[index], pair)
            pairs.update(words[index], index, weights[index])
        fresh += merged not in vocab
        tokens.append(NewToken(merged, frequency, pair[0], pair[1], entry_text(merged, kind) or ""))
    after = sum(w * sum(map(cost, word)) for word, w in zip(words, weights))
    logger.info("vocab: %d new tokens (%d merges) from %d distinct words; the corpus goes from %d to %d tokens (%s)",
                fresh, len(tokens), len(words), before, after, stopped)
    return Learned(tokens, kind, "Korean-first BPE" if reuse else "continued BPE", len(words), before, after, stopped,
                   fresh)
