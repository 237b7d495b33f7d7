"""The task names `kotune eval` accepts, the presets, and one order for tables.

Two kinds of names. The KIT-19 table's tasks (`TASKS`): KoBEST from lm-eval 0.4.13 and KLUE STS/YNAT, whose YAMLs
live in `lm_eval_tasks/` because lm-eval lacks them; they are scored as acc and macro F1. lm-eval's own Korean
suites (`SUITES`): groups, tasks or tags of the pinned wheel, each with the wheel folder that defines it, so a run
indexes a few folders instead of all ~15k lm-eval tasks. Their scores are lm-eval's metrics under lm-eval's names.
This module imports no lm-eval: config validation reads it.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from kotune.errors import KotuneError

TASKS_DIR = Path(__file__).parent / "lm_eval_tasks"  # task YAMLs lm-eval lacks, and their aggregations
# name → (label in the table, columns a local row needs: the Hub dataset's layout)
TASKS: dict[str, tuple[str, tuple[str, ...]]] = {
    "kobest_copa": ("KoBEST_COPA", ("premise", "question", "alternative_1", "alternative_2", "label")),
    "kobest_boolq": ("KoBEST_BoolQ", ("paragraph", "question", "label")),
    "kobest_hellaswag": ("KoBEST_HellaSwag", ("context", "ending_1", "ending_2", "ending_3", "ending_4", "label")),
    "klue_sts": ("KLUE_STS", ("sentence1", "sentence2", "labels")),
    "kobest_sentineg": ("KoBEST_SentiNeg", ("sentence", "label")),
    "klue_ynat": ("KLUE_YNAT", ("title", "label")),
    "kobest_wic": ("KoBEST_WiC", ("word", "context_1", "context_2", "label")),
}
# lm-eval 0.4.13's Korean suites: name (a group unless said) → (table label, folder under lm_eval/tasks)
SUITES: dict[str, tuple[str, str]] = {
    "kmmlu": ("KMMLU", "kmmlu/default"),
    "kmmlu_direct": ("KMMLU (direct, generated)", "kmmlu/direct"),
    "kmmlu_hard": ("KMMLU-HARD", "kmmlu/hard"),
    "kmmlu_direct_hard": ("KMMLU-HARD (direct, generated)", "kmmlu/direct_hard"),
    "kmmlu_cot_hard": ("KMMLU-HARD (chain of thought)", "kmmlu/cot_hard"),
    "haerae": ("HAE-RAE Bench", "haerae"),
    "click": ("CLIcK", "click"),
    "csatqa": ("CSAT-QA", "csatqa"),
    "kormedmcqa": ("KorMedMCQA", "kormedmcqa"),
    "hrm8k": ("HRM8K", "hrm8k/default"),
    "belebele_kor_Hang": ("Belebele (kor_Hang)", "belebele"),  # a task
    "global_mmlu_ko": ("Global-MMLU-Lite (ko)", "global_mmlu/default/ko"),
    "global_mmlu_full_ko": ("Global-MMLU (ko)", "global_mmlu/full/ko"),
    "mmlu_prox_ko": ("MMLU-ProX (ko)", "mmlu_prox/ko"),
    "mmlu_prox_lite_ko": ("MMLU-ProX-Lite (ko)", "mmlu_prox/ko"),
    "include_base_44_korean": ("INCLUDE (Korean)", "include/default/Korean"),
    "include_base_44_korean_few_shot_en": ("INCLUDE (Korean, English few-shot)", "include/few_shot_en/Korean"),
    "include_base_44_korean_few_shot_og": ("INCLUDE (Korean, original few-shot)", "include/few_shot_og/Korean"),
    "paws_ko": ("PAWS-X (ko)", "paws-x"),  # a task
    "kbl": ("KBL (Korean legal)", "kbl"),  # a tag: its tasks are scored one by one, lm-eval aggregates none
    "kbl_knowledge_em": ("KBL knowledge", "kbl"),  # a tag
    "kbl_reasoning_em": ("KBL reasoning", "kbl"),  # a tag
    "kbl_bar_exam_em": ("KBL bar exam", "kbl"),  # a tag
}
KIT19_TASKS = ("kobest_copa", "kobest_boolq", "kobest_hellaswag", "klue_sts", "kobest_sentineg", "klue_ynat")
# What 2025-26 Korean model cards report (EXAONE, Kanana, A.X, HyperCLOVA X), plus two cheap reading/knowledge sets
KOREAN = ("kmmlu", "haerae", "click", "csatqa", "kormedmcqa", "hrm8k", "belebele_kor_Hang", "global_mmlu_ko")
ALIASES = {
    "kit19": KIT19_TASKS,
    "kobest": ("kobest_boolq", "kobest_copa", "kobest_hellaswag", "kobest_sentineg", "kobest_wic"),
    "klue": ("klue_sts", "klue_ynat"),
    "korean": KOREAN,
    "all": tuple(TASKS),
}
ORDER = [*TASKS, *SUITES]


def label_of(name: str) -> str:
    return TASKS[name][0] if name in TASKS else SUITES[name][0]


def resolve_tasks(tasks: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """Task names in table order. Accepts a comma list or a list; the presets in ALIASES expand."""
    if tasks is None:
        return list(KIT19_TASKS)
    items = tasks.split(",") if isinstance(tasks, str) else [p for t in tasks for p in str(t).split(",")]
    names, problems = [], []
    for item in (i.strip() for i in items):
        if not item:
            continue
        if item in ALIASES or item in TASKS or item in SUITES:
            names += [n for n in ALIASES.get(item, (item,)) if n not in names]
            continue
        near = difflib.get_close_matches(item, ORDER + list(ALIASES), n=1, cutoff=0.6)
        problems.append(f"unknown eval task '{item}'" + (f": did you mean '{near[0]}'?" if near else ""))
    if problems:
        raise KotuneError("; ".join(problems) + f" (tasks: {', '.join(ORDER)}; presets: "
                          + ", ".join(f"{k} = {'+'.join(v) if k != 'all' else 'every KoBEST and KLUE task'}"
                                      for k, v in ALIASES.items()) + ")")
    if not names:
        raise KotuneError(f"no eval tasks given; choose from {', '.join(ORDER)} or a preset "
                          f"({', '.join(ALIASES)})")
    return sorted(names, key=ORDER.index)
