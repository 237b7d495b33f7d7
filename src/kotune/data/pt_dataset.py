"""The pt stage's training set: raw documents tokenized, EOS after each, packed into blocks of max_length tokens.

A document is its text's tokens framed as the base frames one: the BOS its tokenizer adds by itself (Llama, Mistral,
Gemma; none for Polyglot-Ko or Qwen), the text, then EOS. A document longer than max_length is cut into pieces of
max_length tokens; documents and pieces fill blocks of at most max_length tokens in order (next fit), so a document
that fits in a block is never cut. A block lists its documents in `seq_lengths`: the padding-free collator restarts
`position_ids` at each one and never predicts a document's first token from the previous document, so each document
trains as if it were alone (every other token is trained: labels are the input ids).

>>> pack_blocks([[1, 2, 9], [3, 4, 5, 6, 7, 9], [8, 9]], max_length=4)
[([1, 2, 9], [3]), ([3, 4, 5, 6], [4]), ([7, 9, 8, 9], [2, 2])]
"""

from __future__ import annotations

import logging

from datasets import Dataset, Features, List, Value

from kotune.config.schema import DatasetMixture
from kotune.data.mixture import draw, shuffled, source_report
from kotune.data.report import hangul_counts, percentiles
from kotune.errors import KotuneError

logger = logging.getLogger(__name__)
TOKENIZE_BATCH = 1000


def leading_bos(tokenizer) -> list[int]:
    """[BOS] when the tokenizer puts BOS before a text by itself (add_special_tokens), else []."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return []
    framed = tokenizer("가", add_special_tokens=True)["input_ids"]
    bare = tokenizer("가", add_special_tokens=False)["input_ids"]
    return [bos] if framed[:1] == [bos] and bare[:1] != [bos] else []


def document_ids(tokenizer, texts: list[str]) -> list[list[int]]:
    """Each text as a document: the tokenizer's own BOS (if it adds one), the text's tokens, EOS."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise KotuneError(f"the tokenizer of '{tokenizer.name_or_path}' has no eos_token: the pt stage ends every "
                          "document with EOS so that the model learns where a text stops; set eos_token in its "
                          "tokenizer_config.json")
    bos = leading_bos(tokenizer)
    out = []
    for start in range(0, len(texts), TOKENIZE_BATCH):
        ids = tokenizer(texts[start:start + TOKENIZE_BATCH], add_special_tokens=False)["input_ids"]
        out += [bos + list(text_ids) + [eos] for text_ids in ids]
    return out


def pieces(documents: list[list[int]], max_length: int) -> list[list[int]]:
    """Every document, a long one cut into pieces of max_length tokens (the last piece shorter).

    >>> pieces([[1, 2, 9], [3, 4, 5, 6, 7, 9]], 4)
    [[1, 2, 9], [3, 4, 5, 6], [7, 9]]
    """
    return [doc[i:i + max_length] for doc in documents for i in range(0, len(doc), max_length)]


def pack_blocks(documents: list[list[int]], max_length: int) -> list[tuple[list[int], list[int]]]:
    """(ids, seq_lengths) of each block: the documents' pieces in order, next fit into at most max_length tokens."""
    blocks, ids, lengths = [], [], []
    for piece in pieces(documents, max_length):
        if len(ids) + len(piece) > max_length:
            blocks.append((ids, lengths))
            ids, lengths = [], []
        ids += piece
        lengths.append(len(piece))
    if ids:
        blocks.append((ids, lengths))
    return blocks


def as_dataset(documents: list[list[int]], max_length: int, blocks: bool) -> Dataset:
    """Blocks of documents (`input_ids`, `seq_lengths`) for padding-free batches, or one row per document piece."""
    if not blocks:
        return Dataset.from_dict({"input_ids": pieces(documents, max_length)},
                                 features=Features({"input_ids": List(Value("int32"))}))
    packed = pack_blocks(documents, max_length)
    features = Features({"input_ids": List(Value("int32")), "seq_lengths": List(Value("int32"))})
    return Dataset.from_dict({"input_ids": [ids for ids, _ in packed], "seq_lengths": [n for _, n in packed]},
                             features=features)


def build_pt_data(mixture: DatasetMixture, tokenizer, max_length: int | None, strict: bool = False,
                  eval_split_size: float | None = None, blocks: bool = True, loaded=None
                  ) -> tuple[Dataset, Dataset | None, dict]:
    """(training rows, eval rows or None, report). The mixture draws documents as it draws SFT rows (weights, caps,
    eval split, seed); each is tokenized once, and the training documents are shuffled before they are packed.
    `blocks`: blocks of documents for padding-free batches; else one row per document piece (padded batches)."""
    if not max_length:
        raise KotuneError("max_length: the pt stage packs documents into blocks of max_length tokens; set it "
                          "(e.g. 2048)")
    rng, drawn, held = draw(mixture, strict, eval_split_size, loaded)
    sources: dict = {}
    documents, corpus = _encode(drawn, tokenizer, sources)
    documents = [documents[i] for i in shuffled(len(documents), sources, rng)]
    train = as_dataset(documents, max_length, blocks)
    report = {"documents": len(documents), **corpus, "max_length": max_length,
              "documents_cut": sum(len(d) > max_length for d in documents),
              "pieces": sum(-(-len(d) // max_length) for d in documents)}
    if blocks:
        report.update(blocks=len(train), block_fill=round(sum(map(len, documents)) / (len(train) * max_length), 4))
    eval_dataset = None
    if held:
        eval_sources: dict = {}
        eval_documents, eval_corpus = _encode(held, tokenizer, eval_sources)
        if not eval_documents:
            raise KotuneError("the eval split is empty after filtering: " + "; ".join(
                f"{k}: dropped {v['dropped'] or 'none'}" for k, v in eval_sources.items()))
        eval_dataset = as_dataset(eval_documents, max_length, blocks)
        report["eval"] = {"documents": len(eval_documents), "tokens": eval_corpus["tokens"], "rows": len(eval_dataset)}
        for sid, entry in eval_sources.items():
            sources.setdefault(sid, {"format": entry["format"], "used": 0, "available": 0, "dropped": {}})["eval"] = \
                entry
    report["per_source"] = sources
    return train, eval_dataset, report


def _encode(drawn, tokenizer, sources: dict) -> tuple[list[list[int]], dict]:
    """(every drawn document's ids, in draw order; the corpus counts), with one report entry per source."""
    documents, syllables, letters, korean_tokens, korean_syllables = [], 0, 0, 0, 0
    bos_eos = len(leading_bos(tokenizer)) + 1
    for rows, picks in drawn:
        texts = [rows.records[pick.index] for pick in picks]
        ids = document_ids(tokenizer, texts)
        for text, doc in zip(texts, ids):
            hangul, n_letters = hangul_counts(text)
            syllables, letters = syllables + hangul, letters + n_letters
            if hangul:
                korean_tokens, korean_syllables = korean_tokens + len(doc) - bos_eos, korean_syllables + hangul
        documents += ids
        sources[rows.source.id] = source_report(rows, len(ids), tokens=sum(map(len, ids)))
    lengths = [len(d) for d in documents]
    return documents, {
        "tokens": sum(lengths),
        "document_tokens": percentiles(lengths) if lengths else {},
        "hangul_syllables": syllables,
        "tokens_per_hangul_syllable": round(korean_tokens / korean_syllables, 3) if korean_syllables else None,
        "hangul_share": round(syllables / letters, 4) if letters else 0.0,
    }


def describe(report: dict) -> str:
    """One line on what a pt run trains on (logged by the stage, printed by `kotune data`)."""
    line = (f"{report['documents']} documents, {report['tokens']} tokens (EOS after each), "
            f"{report['tokens_per_hangul_syllable']} tokens per Hangul syllable, Hangul "
            f"{100 * report['hangul_share']:.1f}% of letters")
    if report.get("documents_cut"):
        line += f"; {report['documents_cut']} documents longer than max_length {report['max_length']} cut into pieces"
    if "blocks" in report:
        line += (f"; {report['blocks']} blocks of at most {report['max_length']} tokens, "
                 f"{100 * report['block_fill']:.1f}% full")
    return line
