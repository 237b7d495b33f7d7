"""The SFT training set: the mixture's picks tokenized with answer-only labels, one dataset per epoch variant.

KIT-19 sources are rendered once per epoch ("variants"), so each epoch draws new templates; instruction and chat
rows have one form, repeated in every variant.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Callable

from datasets import Dataset, Features, List, Value

from kotune.config.schema import DatasetMixture
from kotune.data.encode import encode_examples, fix_for, unplaced_turn
from kotune.data.encode_map import auto_num_proc, encode_picks, in_memory_dataset
from kotune.data.mixture import draw, drop, shuffled, source_report
from kotune.data.thinking import REASONING, check_mode, template_kwargs
from kotune.errors import KotuneError

logger = logging.getLogger(__name__)

# A retry is tokenized only if its estimate is under max_length × this. On 100K bench rows the successful retries
# were estimated at most 1.01× max_length, and a margin of 1.05 kept the same 98,089 examples as trying every template.
RETRY_MARGIN = 1.1


def _render(to_messages: Callable, record, key: str, epoch: int):
    try:
        return to_messages(record, key, epoch), None
    except Exception as err:  # a template that cannot render this row
        return None, f"template error ({type(err).__name__})"


def encode_source(to_messages: Callable, templated: bool, records: list, keys: list[str], tokenizer,
                  max_length: int | None, overlong: str, n_variants: int, tries: int = 8,
                  last_turn_only: bool = False, thinking: str = "auto"):
    """Per pick (its record and key): ([(ids, labels)] * variants, reason, truncated), a pick split per turn giving
    its last example; `encode_source_examples` has every example and the reasoning note."""
    return [(variants and [examples[-1] for examples in variants], reason, cut) for variants, reason, cut, _ in
            encode_source_examples(to_messages, templated, records, keys, tokenizer, max_length, overlong,
                                   n_variants, tries, last_turn_only, thinking)]


def encode_source_examples(to_messages: Callable, templated: bool, records: list, keys: list[str], tokenizer,
                           max_length: int | None, overlong: str, n_variants: int, tries: int = 8,
                           last_turn_only: bool = False, thinking: str = "auto"):
    """Per pick (its record and key): ([[(ids, labels), ...]] * variants, reason, truncated, note): one example, or
    one per trained turn where the template re-renders earlier turns; note: what happened to the row's reasoning
    (`encode.encode_examples`). Batched: one tokenizer call per attempt.

    A KIT-19 example whose drawn template makes it longer than max_length tries other templates before it is
    dropped; an instruction or chat row has one form only. Only templates that can fit are tokenized: one whose
    text, at the tokens per character of the first try, would still be over max_length by `RETRY_MARGIN` is
    skipped (a long document stays long under any phrasing; tokenizing it 8 times cost 28% of the time).
    """
    n_epochs = n_variants if templated else 1
    attempts = tries if templated else 1
    results: list[list] = [[None] * n_epochs for _ in records]
    reasons: list[str | None] = [None] * len(records)
    truncated = [0] * len(records)
    notes: list[str | None] = [None] * len(records)
    for epoch in range(n_epochs):
        pending = [i for i in range(len(records)) if reasons[i] is None]
        density: dict[int, float] = {}  # tokens per character of each pending example's first try
        for attempt in range(attempts):
            if not pending:
                break
            batch, owners, skipped = [], [], []
            for i in pending:
                messages, reason = _render(to_messages, records[i], keys[i], epoch + attempt * n_variants)
                if not reason and not epoch and not attempt:
                    reason = unplaced_turn(tokenizer, messages)
                if reason:
                    reasons[i] = reason
                    continue
                if i in density and density[i] * _chars(messages) > max_length * RETRY_MARGIN:
                    skipped.append(i)
                    continue
                batch.append(messages)
                owners.append(i)
            still_long = skipped
            for i, messages, (examples, note) in zip(owners, batch, encode_examples(tokenizer, batch, last_turn_only,
                                                                                     thinking)):
                notes[i] = note
                if max_length is None or all(len(ids) <= max_length for ids, _ in examples):
                    results[i][epoch] = examples
                elif overlong == "truncate":
                    results[i][epoch] = [(ids[:max_length], labels[:max_length]) for ids, labels in examples]
                    truncated[i] = 1
                else:
                    density.setdefault(i, max(len(ids) for ids, _ in examples) / max(1, _chars(messages)))
                    still_long.append(i)
            pending = still_long
        for i in pending:
            reasons[i] = "longer than max_length"
        for i in range(len(records)):
            if reasons[i] is None and any(not labels or max(labels) == -100 for _, labels in results[i][epoch]):
                reasons[i] = "no answer tokens left after truncation"  # every label masked (ids are >= 0)
    out = []
    for i in range(len(records)):
        if reasons[i]:
            out.append((None, reasons[i], 0, None))
        else:
            variants = results[i] if templated else results[i] * n_variants
            out.append((variants, None, truncated[i], notes[i]))
    return out


def _chars(messages: list[dict]) -> int:
    return sum(len(m["content"]) + len(m.get(REASONING) or "") for m in messages)


def build_sft_data(mixture: DatasetMixture, tokenizer, max_length: int | None, overlong: str = "drop",
                   strict: bool = False, variants_for: Callable[[int], int] = lambda n: 1,
                   last_turn_only: bool = False, eval_split_size: float | None = None, num_proc: int | None = None,
                   loaded=None, thinking: str = "auto") -> tuple[list[Dataset], Dataset | None, dict]:
    """(one tokenized dataset per epoch variant, the eval dataset or None, report per source). All variants hold the
    same examples in the same order; only KIT-19 phrasings differ between them. Eval rows (see `mixture.draw`) are
    encoded once, with the first epoch's templates. `num_proc` (TRL's `dataset_num_proc`) processes tokenize; unset,
    one per core for big data (`encode_map.auto_num_proc`); any count gives the same datasets. `loaded`: the sources
    already read (`mixture.load_all`). `thinking` (auto | on | off): the chat template's thinking switch and what
    becomes of each row's reasoning (`kotune.data.thinking`); every reasoning dropped is counted and logged."""
    thinking = check_mode(thinking)
    template_kwargs(tokenizer.chat_template, thinking, tokenizer.name_or_path)  # on/off without a switch: refused now
    rng, drawn, held = draw(mixture, strict, eval_split_size, loaded)
    templated = any(rows.templated for rows, _ in drawn)
    n_variants = max(1, int(variants_for(sum(len(p) for _, p in drawn)))) if templated else 1
    settings = dict(tokenizer=tokenizer, max_length=max_length, overlong=overlong, strict=strict,
                    last_turn_only=last_turn_only, num_proc=num_proc, thinking=thinking)
    report: dict = {}
    encoded, kept = _encode_drawn(drawn, n_variants, report, **settings)
    log_reasoning(report, tokenizer.name_or_path)
    order = shuffled(len(kept), report, rng)
    datasets = [_variant(encoded, [kept[i] for i in order], v) for v in range(n_variants)]
    if n_variants > 1:
        logger.info("KIT-19 templates: %d epoch variants, a new template draw per example per epoch", n_variants)
    eval_dataset = None
    if held:
        eval_report: dict = {}
        encoded_eval, kept_eval = _encode_drawn(held, 1, eval_report, **settings)
        if not kept_eval:
            raise KotuneError("the eval split is empty after filtering: " + "; ".join(
                f"{k}: dropped {v['dropped'] or 'none'}" for k, v in eval_report.items()))
        eval_dataset = _variant(encoded_eval, kept_eval, 0)
        for sid, entry in eval_report.items():
            report.setdefault(sid, {"format": entry["format"], "used": 0, "available": 0, "dropped": {}})["eval"] = entry
        logger.info("eval split: %d examples (%s)", len(kept_eval),
                    ", ".join(f"{k} {v['used']}" for k, v in eval_report.items()))
    return datasets, eval_dataset, report


def _variant(encoded: Dataset, rows: list[int], v: int) -> Dataset:
    """Epoch `v`'s `input_ids`/`labels` of the given rows, in that order (`select` plus `flatten_indices` cost 4 s
    per 100K rows)."""
    suffix = f"_{v}" if v else ""
    table = encoded.data.table.select([f"input_ids{suffix}", f"labels{suffix}"]).take(rows)
    table = table.rename_columns(["input_ids", "labels"]).replace_schema_metadata(None)
    features = Features({"input_ids": List(Value("int32")), "labels": List(Value("int64"))})
    return in_memory_dataset(table, features)


def log_reasoning(report: dict, base: str) -> None:
    """One line each for conversations split per turn and for reasoning dropped, counted over the sources."""
    split = sum(s.get("split_rows", 0) for s in report.values())
    if split:
        logger.info("data: %d conversations became %d examples, one per assistant turn: the chat template renders "
                    "earlier turns differently once a later turn follows (it drops their reasoning), so each turn "
                    "trains on exactly its own inference prompt", split,
                    split + sum(s.get("split_examples", 0) for s in report.values()))
    dropped = Counter()
    for entry in report.values():
        dropped.update(entry.get("reasoning_dropped", {}))
    if dropped.get(OFF):
        logger.warning("thinking: off: the reasoning of %d rows was dropped; they train on the answer only (set "
                       "thinking: auto or on to learn it)", dropped[OFF])
    if dropped.get(UNRENDERED):
        logger.warning("the chat template of '%s' never renders an assistant's reasoning (as DeepSeek-V3.1's strips "
                       "it): the reasoning of %d rows was dropped; they train on the answer only", base,
                       dropped[UNRENDERED])


OFF, UNRENDERED = "thinking: off", "the template never renders it"


def _encode_drawn(drawn, n_variants: int, report: dict, tokenizer, max_length, overlong, strict, last_turn_only,
                  num_proc, thinking) -> tuple[Dataset, list[int]]:
    """(every example encoded, in draw order; the rows kept); fills `report` per source (used, truncated, answers,
    conversations split per turn and reasoning dropped, when there are any)."""
    n_picks = sum(len(picks) for _, picks in drawn)
    procs = auto_num_proc(n_picks, num_proc)
    if procs > 1:
        logger.info("data: tokenizing %d examples in %d processes (dataset_num_proc to change)", n_picks, procs)
    encoded = encode_picks(drawn, encode_source_examples, n_variants, procs, tokenizer=tokenizer,
                           max_length=max_length, overlong=overlong, last_turn_only=last_turn_only, thinking=thinking)
    reasons = encoded.data.column("reason").to_pylist()
    cuts = encoded.data.column("truncated").to_pylist()
    parts = encoded.data.column("part").to_pylist()
    notes = encoded.data.column("note").to_pylist()
    kept: list[int] = []
    row = 0
    for rows, picks in drawn:
        used = truncated = split = extra_examples = 0
        answers: Counter = Counter()
        dropped: Counter = Counter()
        for pick in picks:
            if reasons[row]:
                drop(rows, pick.index, reasons[row], strict, fix_for(reasons[row]))
            else:
                kept.append(row)
                used += 1
                truncated += cuts[row]
                answers[rows.answer_of(rows.records[pick.index])] += 1
                if notes[row]:
                    dropped[OFF if notes[row] == "off" else UNRENDERED] += 1
            row += 1
            more = 0
            while row < len(parts) and parts[row]:  # the further examples of a conversation split per turn
                kept.append(row)
                row += 1
                more += 1
            split += bool(more)
            extra_examples += more
        answers.pop(None, None)
        extra = {"answers": dict(answers.most_common())} if answers else {}
        if split:
            extra.update(split_rows=split, split_examples=extra_examples)
        if dropped:
            extra["reasoning_dropped"] = dict(dropped)
        report[rows.source.id] = source_report(rows, used, truncated=truncated, **extra)
    return encoded, kept
