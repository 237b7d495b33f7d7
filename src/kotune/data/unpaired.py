"""Unpaired preference rows for KTO: `{prompt, completion, label}` with `label` true for a desirable answer.

Each row becomes `prompt_ids` (exactly the generation prompt inference sends), `completion_ids` (answer + EOS) and
`label`. A `format: preference` source in a KTO mixture is unpaired: each pair gives its chosen answer as a
desirable row and its rejected answer as an undesirable one. The report counts desirable and undesirable rows per
source. Rows are dropped and counted as in pairwise data (empty answer, prompt over `max_prompt_length`, prompt +
answer over `max_length`) and for a label that is not true/false.
"""

from __future__ import annotations

from datasets import Dataset

from kotune.config.schema import DatasetMixture
from kotune.data.encode import encode_conversations
from kotune.data.mixture import drop, source_report
from kotune.data.preference import assemble, encode_pairs, placeable, split_prompt
from kotune.errors import KotuneError

READS = ("unpaired", "preference")


def build_unpaired_data(mixture: DatasetMixture, tokenizer, max_length: int | None, max_prompt_length: int | None,
                        strict: bool = False, eval_split_size: float | None = None,
                        ) -> tuple[Dataset, Dataset | None, dict]:
    """(prompt_ids/completion_ids/label rows, the eval rows or None, report per source)."""
    for src in mixture.datasets:
        if src.format not in READS:
            raise KotuneError(f"dataset '{src.id}': KTO needs format: unpaired ({{prompt, completion, label}}) or "
                              f"preference (unpaired into one desirable and one undesirable row), not '{src.format}'")
    return assemble(mixture, strict, eval_split_size, "KTO dataset",
                    lambda drawn, report: _encode(drawn, tokenizer, max_length, max_prompt_length, strict, report))


def _encode(drawn, tokenizer, max_length, max_prompt_length, strict, report: dict) -> dict[str, list]:
    columns: dict[str, list] = {"prompt_ids": [], "completion_ids": [], "label": []}
    for rows, picks in drawn:
        if rows.source.format == "preference":
            pairs = encode_pairs([(rows, picks)], tokenizer, max_length, max_prompt_length, strict, report)
            for prompt, chosen, rejected in zip(pairs["prompt_ids"], pairs["chosen_ids"], pairs["rejected_ids"]):
                columns["prompt_ids"] += [prompt, prompt]
                columns["completion_ids"] += [chosen, rejected]
                columns["label"] += [True, False]
            n = len(pairs["prompt_ids"])
            report[rows.source.id].update(used=2 * n, pairs_unpaired=n, desirable=n, undesirable=n)
            continue
        convs = [rows.records[p.index]["prompt"] + [{"role": "assistant", "content": rows.records[p.index]["completion"]}]
                 for p in picks]
        desirable = undesirable = 0
        picks, convs = placeable(rows, picks, convs, tokenizer, strict)
        for pick, encoded in zip(picks, encode_conversations(tokenizer, convs)):
            prompt, completion = split_prompt(*encoded)
            if max_prompt_length is not None and len(prompt) > max_prompt_length:
                drop(rows, pick.index, "prompt longer than max_prompt_length", strict)
                continue
            if max_length is not None and len(prompt) + len(completion) > max_length:
                drop(rows, pick.index, "longer than max_length", strict)
                continue
            label = rows.records[pick.index]["label"]
            columns["prompt_ids"].append(prompt)
            columns["completion_ids"].append(completion)
            columns["label"].append(label)
            desirable, undesirable = desirable + label, undesirable + (not label)
        report[rows.source.id] = source_report(rows, desirable + undesirable, desirable=desirable,
                                               undesirable=undesirable)
    return columns
