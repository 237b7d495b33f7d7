"""The SFT training set: the mixture's picks tokenized with answer-only labels, one dataset per epoch variant.

KIT-19 sources are rendered once per epoch ("variants"), so each epoch draws new templates; instruction and chat
rows have one form, repeated in every variant.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Callable

from datasets import Dataset

from kotune.config.schema import DatasetMixture
from kotune.data.encode import encode_conversations
from kotune.data.mixture import draw, drop, Pick, shuffled, source_report
from kotune.data.sources import SourceRows
from kotune.errors import KotuneError

logger = logging.getLogger(__name__)


def _render(rows: SourceRows, record, key: str, epoch: int):
    try:
        return rows.to_messages(record, key, epoch), None
    except Exception as err:  # a template that cannot render this row
        return None, f"template error ({type(err).__name__})"


def _encode_source(rows: SourceRows, picks: list[Pick], tokenizer, max_length: int | None,
                   overlong: str, n_variants: int, tries: int = 8, last_turn_only: bool = False):
    """Per pick: ([(ids, labels)] * variants, reason, truncated). Batched: one tokenizer call per attempt.

    A KIT-19 example whose drawn template makes it longer than max_length tries other templates before it is
    dropped; an instruction or chat row has one form only.
    """
    n_epochs = n_variants if rows.templated else 1
    attempts = tries if rows.templated else 1
    results: list[list] = [[None] * n_epochs for _ in picks]
    reasons: list[str | None] = [None] * len(picks)
    truncated = [0] * len(picks)
    for epoch in range(n_epochs):
        pending = [i for i in range(len(picks)) if reasons[i] is None]
        for attempt in range(attempts):
            if not pending:
                break
            batch, owners = [], []
            for i in pending:
                pick = picks[i]
                messages, reason = _render(rows, rows.records[pick.index], pick.key, epoch + attempt * n_variants)
                if reason:
                    reasons[i] = reason
                    continue
                batch.append(messages)
                owners.append(i)
            still_long = []
            for i, (ids, labels) in zip(owners, encode_conversations(tokenizer, batch, last_turn_only)):
                if max_length is None or len(ids) <= max_length:
                    results[i][epoch] = (ids, labels)
                elif overlong == "truncate":
                    results[i][epoch] = (ids[:max_length], labels[:max_length])
                    truncated[i] = 1
                else:
                    still_long.append(i)
            pending = still_long
        for i in pending:
            reasons[i] = "longer than max_length"
        for i in range(len(picks)):
            if reasons[i] is None and all(x == -100 for x in results[i][epoch][1]):
                reasons[i] = "no answer tokens left after truncation"
    out = []
    for i in range(len(picks)):
        if reasons[i]:
            out.append((None, reasons[i], 0))
        else:
            variants = results[i] if rows.templated else results[i] * n_variants
            out.append((variants, None, truncated[i]))
    return out


def build_sft_data(mixture: DatasetMixture, tokenizer, max_length: int | None, overlong: str = "drop",
                   strict: bool = False, variants_for: Callable[[int], int] = lambda n: 1,
                   last_turn_only: bool = False, eval_split_size: float | None = None,
                   ) -> tuple[list[Dataset], Dataset | None, dict]:
    """(one tokenized dataset per epoch variant, the eval dataset or None, report per source). All variants hold the
    same examples in the same order; only KIT-19 phrasings differ between them. Eval rows (see `mixture.draw`) are
    encoded once, with the first epoch's templates."""
    rng, drawn, held = draw(mixture, strict, eval_split_size)
    templated = any(rows.templated for rows, _ in drawn)
    n_variants = max(1, int(variants_for(sum(len(p) for _, p in drawn)))) if templated else 1
    settings = dict(tokenizer=tokenizer, max_length=max_length, overlong=overlong, strict=strict,
                    last_turn_only=last_turn_only)
    report: dict = {}
    examples = _encode_drawn(drawn, n_variants, report, **settings)
    order = shuffled(len(examples), report, rng)
    datasets = [Dataset.from_dict({"input_ids": [examples[i][v][0] for i in order],
                                   "labels": [examples[i][v][1] for i in order]})
                for v in range(n_variants)]
    if n_variants > 1:
        logger.info("KIT-19 templates: %d epoch variants, a new template draw per example per epoch", n_variants)
    eval_dataset = None
    if held:
        eval_report: dict = {}
        evals = _encode_drawn(held, 1, eval_report, **settings)
        if not evals:
            raise KotuneError("the eval split is empty after filtering: " + "; ".join(
                f"{k}: dropped {v['dropped'] or 'none'}" for k, v in eval_report.items()))
        eval_dataset = Dataset.from_dict({"input_ids": [e[0][0] for e in evals], "labels": [e[0][1] for e in evals]})
        for sid, entry in eval_report.items():
            report.setdefault(sid, {"format": entry["format"], "used": 0, "available": 0, "dropped": {}})["eval"] = entry
        logger.info("eval split: %d examples (%s)", len(evals),
                    ", ".join(f"{k} {v['used']}" for k, v in eval_report.items()))
    return datasets, eval_dataset, report


def _encode_drawn(drawn, n_variants: int, report: dict, tokenizer, max_length, overlong, strict, last_turn_only):
    """Each pick's encoded variants, in draw order; fills `report` per source (used, truncated, answers)."""
    examples: list[list[tuple[list[int], list[int]]]] = []
    for rows, picks in drawn:
        used = truncated = 0
        answers: Counter = Counter()
        for pick, (variants, reason, cut) in zip(picks, _encode_source(rows, picks, tokenizer, max_length,
                                                                       overlong, n_variants,
                                                                       last_turn_only=last_turn_only)):
            if reason:
                drop(rows, pick.index, reason, strict, "fix the row, raise max_length")
                continue
            examples.append(variants)
            used += 1
            truncated += cut
            answers[rows.answer_of(rows.records[pick.index])] += 1
        answers.pop(None, None)
        extra = {"answers": dict(answers.most_common())} if answers else {}
        report[rows.source.id] = source_report(rows, used, truncated=truncated, **extra)
    return examples
