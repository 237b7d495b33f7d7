"""Where new Korean merges sit in a byte-level base's merge list: after the merges that build characters, before the
base's merges that join whole syllables. A leaf (tokenizers only), shared by `learn` and `extend`.

A byte-level BPE (Llama-3, Qwen2) applies its merges by rank. Appended after all of the base's merges, a new merge
can only join what the base left apart, so the base's own multi-syllable merges, learned mostly on other languages'
priorities, fix the cut first: ` 적정한` stays ` 적`|`정한` and no new token for ` 적정` ever fires. kotune
orders the merge list in three parts instead:
1. every base merge that builds characters: neither of its two entries holds a whole Hangul syllable (all English,
   code and other scripts, and the byte merges inside a syllable), in the base's order;
2. the new Korean merges, in the order they were learned (their result may be an entry the base already has: it
   keeps its old id);
3. the base's merges that join a whole syllable to something, in the base's order, for what the new ones leave.
Text without Hangul never meets parts 2 and 3 (each of those merges has a whole syllable on one side, and UTF-8
resynchronises, so the bytes of a syllable only occur where the text holds it), so it tokenizes exactly as before.
Korean text is cut by the new merges first. The vocabulary keeps every old id.
"""

from __future__ import annotations

import json

from kotune.vocab.pieces import HANGUL, byte_decoder, merges_of


LEADS = frozenset("êëìí")  # GPT-2's byte alphabet for 0xEA-0xED


def holds_syllable(entry: str) -> bool:
    """Whether a byte-level entry holds the whole UTF-8 bytes of a Hangul syllable (bits of other characters around
    it allowed)."""
    if not LEADS.intersection(entry):  # no lead byte of U+AC00-U+D7A3 (0xEA-0xED): the common, fast case
        return False
    table = byte_decoder()
    raw = bytes(table[c] for c in entry if c in table)
    return bool(HANGUL.search(raw.decode("utf-8", errors="ignore")))


def split_merges(merges: list[tuple[str, str]]) -> tuple[list, list]:
    """(merges that build characters, merges that join a whole syllable to something), each in the base's order."""
    builds, joins = [], []
    for pair in merges:
        (joins if holds_syllable(pair[0]) or holds_syllable(pair[1]) else builds).append(pair)
    return builds, joins


def ordered_merges(merges: list[tuple[str, str]], new: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The extended merge list: the base's character-building merges, the new merges, the base's syllable joins."""
    builds, joins = split_merges(merges)
    fresh = set(new)  # a base join the new merges repeat keeps its new place (a BPE model keeps one rank a pair)
    return builds + list(new) + [pair for pair in joins if pair not in fresh]


def character_model(backend):
    """The base's BPE model with only its character-building merges: how a word stands before the new merges run
    (what `kotune.vocab.learn` learns them on)."""
    from tokenizers import Tokenizer

    spec = json.loads(backend.to_str())
    model = spec["model"]
    as_strings = any(isinstance(m, str) for m in model.get("merges", []))
    builds, _ = split_merges(merges_of(model))
    model["merges"] = [f"{a} {b}" if as_strings else [a, b] for a, b in builds]
    return Tokenizer.from_str(json.dumps(spec, ensure_ascii=False)).model
