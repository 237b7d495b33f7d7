"""Preference pairs for DPO, ORPO, SimPO and the reward model: the same sources and mixture as SFT, tokenized the
way SFT tokenized its prompts.

Each row becomes `prompt_ids` (exactly the generation prompt inference sends), `chosen_ids` and `rejected_ids`
(answer + EOS, tokenized apart from the prompt). Rows are dropped and counted when an answer is empty, when
chosen equals rejected, when the prompt exceeds `max_prompt_length` tokens, or prompt + answer exceeds
`max_length` tokens.
"""

from __future__ import annotations

from datasets import Dataset

from kotune.config.schema import DatasetMixture
from kotune.data.encode import encode_conversations, fix_for, unplaced_turn
from kotune.data.mixture import draw, drop, shuffled, source_report
from kotune.data.thinking import template_kwargs
from kotune.errors import KotuneError


def split_prompt(ids: list[int], labels: list[int]) -> tuple[list[int], list[int]]:
    """(prompt ids, answer ids) of an encoded conversation whose last turn alone is trained."""
    n = next(i for i, x in enumerate(labels) if x != -100)
    return ids[:n], ids[n:]


def build_preference_data(mixture: DatasetMixture, tokenizer, max_length: int | None,
                          max_prompt_length: int | None, strict: bool = False, eval_split_size: float | None = None,
                          thinking: str = "auto") -> tuple[Dataset, Dataset | None, dict]:
    """(prompt_ids/chosen_ids/rejected_ids rows, the eval rows or None, report per source), drawn by the shared
    mixture engine. `thinking`: the template's switch, as SFT sets it (`kotune.data.thinking`); the answers are
    plain text, so under auto the prompts are non-thinking ones."""
    template_kwargs(tokenizer.chat_template, thinking, tokenizer.name_or_path)  # on/off without a switch: refused
    for src in mixture.datasets:
        if src.format not in (None, "preference"):  # None: inferred from the columns when read
            raise KotuneError(f"dataset '{src.id}': preference training needs format: preference "
                              f"({{prompt, chosen, rejected}}), not '{src.format}'")
    return assemble(mixture, strict, eval_split_size, "preference dataset",
                    lambda drawn, report: encode_pairs(drawn, tokenizer, max_length, max_prompt_length, strict, report,
                                                       thinking))


def assemble(mixture: DatasetMixture, strict: bool, eval_split_size: float | None, what: str, encode,
             ) -> tuple[Dataset, Dataset | None, dict]:
    """Draw the mixture, encode the training and eval picks with `encode(drawn, report) -> columns`, shuffle the
    training rows with the mixture's RNG: (train, eval or None, report per source, eval counts under 'eval')."""
    rng, drawn, held = draw(mixture, strict, eval_split_size)
    report: dict = {}
    columns = encode(drawn, report)
    order = shuffled(len(next(iter(columns.values()))), report, rng, what)
    train = Dataset.from_dict({k: [v[i] for i in order] for k, v in columns.items()})
    if not held:
        return train, None, report
    eval_report: dict = {}
    evals = encode(held, eval_report)
    if not next(iter(evals.values())):
        raise KotuneError("the eval split is empty after filtering: " + "; ".join(
            f"{k}: dropped {v['dropped'] or 'none'}" for k, v in eval_report.items()))
    for sid, entry in eval_report.items():
        report.setdefault(sid, {"format": entry["format"], "used": 0, "available": 0, "dropped": {}})["eval"] = entry
    return train, Dataset.from_dict(evals), report


def placeable(rows, picks: list, convs: list, tokenizer, strict: bool, per_pick: int = 1) -> tuple[list, list]:
    """(picks, conversations) the prompt format can render as they stand (`per_pick` conversations each); the others
    dropped and counted, or an error under strict."""
    kept_picks, kept_convs = [], []
    for k, pick in enumerate(picks):
        group = convs[per_pick * k: per_pick * (k + 1)]
        reason = unplaced_turn(tokenizer, group[0])
        if reason:
            drop(rows, pick.index, reason, strict, fix_for(reason))
            continue
        kept_picks.append(pick)
        kept_convs += group
    return kept_picks, kept_convs


def encode_pairs(drawn, tokenizer, max_length, max_prompt_length, strict, report: dict, thinking: str = "auto",
                 ) -> dict[str, list]:
    """Prompt, chosen and rejected ids of each pick (prompt and answers tokenized apart, as SFT does)."""
    columns: dict[str, list] = {"prompt_ids": [], "chosen_ids": [], "rejected_ids": []}
    for rows, picks in drawn:
        convs = []
        for pick in picks:
            rec = rows.records[pick.index]
            convs.append(rec["prompt"] + [{"role": "assistant", "content": rec["chosen"]}])
            convs.append(rec["prompt"] + [{"role": "assistant", "content": rec["rejected"]}])
        picks, convs = placeable(rows, picks, convs, tokenizer, strict, per_pick=2)
        encoded = encode_conversations(tokenizer, convs, thinking=thinking)
        used = 0
        for k, pick in enumerate(picks):
            prompt, chosen = split_prompt(*encoded[2 * k])
            _, rejected = split_prompt(*encoded[2 * k + 1])
            reason = None
            if max_prompt_length is not None and len(prompt) > max_prompt_length:
                reason = "prompt longer than max_prompt_length"
            elif max_length is not None and len(prompt) + max(len(chosen), len(rejected)) > max_length:
                reason = "longer than max_length"
            if reason:
                drop(rows, pick.index, reason, strict)
                continue
            columns["prompt_ids"].append(prompt)
            columns["chosen_ids"].append(chosen)
            columns["rejected_ids"].append(rejected)
            used += 1
        report[rows.source.id] = source_report(rows, used)
    return columns
