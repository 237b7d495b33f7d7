"""The leaf tasks behind each eval name: the lm-eval YAML that defines each, its Hub dataset and splits, and the
rows a suite's table shows.

A `--data_dir` run swaps the dataset of every leaf, and a KMMLU group has 45, so the leaves come from lm-eval's own
index of the wheel's folders (groups → subgroups → tags → tasks), not from a list kept here that could drift from
the pinned wheel. The KIT-19 tasks are known statically, so config checks on them import no lm-eval.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path

from kotune.eval.tasks import SUITES, TASKS, TASKS_DIR

LM_EVAL_TASKS = Path(find_spec("lm_eval").origin).parent / "tasks" if find_spec("lm_eval") else Path("lm_eval/tasks")
SPLIT_KEYS = ("test_split", "validation_split", "training_split", "fewshot_split")  # lm-eval's config keys
# Hub dataset → the columns its rows carry that lm-eval's prompts, targets and filters read
COLUMNS: dict[str, tuple[str, ...]] = {
    "HAERAE-HUB/KMMLU": ("question", "A", "B", "C", "D", "answer"),
    "HAERAE-HUB/KMMLU-HARD": ("question", "A", "B", "C", "D", "answer"),
    "HAERAE-HUB/HAE_RAE_BENCH": ("query", "answer"),
    "EunsuKim/CLIcK": ("id", "paragraph", "question", "choices", "answer"),
    "HAERAE-HUB/csatqa": ("context", "question", "option#1", "option#2", "option#3", "option#4", "option#5", "gold"),
    "sean0042/KorMedMCQA": ("question", "A", "B", "C", "D", "E", "answer"),
    "HAERAE-HUB/HRM8K": ("question", "answer"),
    "facebook/belebele": ("flores_passage", "question", "mc_answer1", "mc_answer2", "mc_answer3", "mc_answer4",
                          "correct_answer_num"),
    "CohereForAI/Global-MMLU-Lite": ("question", "option_a", "option_b", "option_c", "option_d", "answer",
                                     "subject_category"),
    "CohereForAI/Global-MMLU": ("question", "option_a", "option_b", "option_c", "option_d", "answer", "subject"),
    "li-lab/MMLU-ProX": ("question", *(f"option_{i}" for i in range(10)), "answer", "cot_content", "category"),
    "li-lab/MMLU-ProX-Lite": ("question", *(f"option_{i}" for i in range(10)), "answer", "cot_content", "category"),
    "CohereForAI/include-base-44": ("question", "option_a", "option_b", "option_c", "option_d", "answer", "domain"),
    "google-research-datasets/paws-x": ("sentence1", "sentence2", "label"),
}


@dataclass
class Leaf:
    """One lm-eval task that reads one dataset. `dataset` is (Hub path, config name or None); `splits` maps
    lm-eval's split keys (test_split, fewshot_split, ...) to the split names the task reads."""

    name: str
    yaml: Path
    dataset: tuple[str, str | None] | None
    splits: dict[str, str]
    columns: tuple[str, ...] = ()


@dataclass
class Suite:
    """A name the user gave: its leaves, and the rows its table shows (the suite, then its direct children:
    KMMLU's subject groups, HAE-RAE's subsets; for a tag, which lm-eval aggregates not, its tasks)."""

    name: str
    leaves: list[Leaf] = field(default_factory=list)
    rows: list[str] = field(default_factory=list)


def kit19_leaf(task: str) -> Leaf:
    """The KIT-19 tasks, as today: DIR/<task>/{train,validation,test}.jsonl."""
    source = (LM_EVAL_TASKS / "kobest" if task.startswith("kobest_") else TASKS_DIR) / f"{task}.yaml"
    splits = {"test_split": "test", "validation_split": "validation", "training_split": "train"}
    return Leaf(task, source, None, splits, TASKS[task][1])


def suite_folders(names: list[str]) -> list[Path]:
    """The wheel folders that define these suites (each once)."""
    return list(dict.fromkeys(LM_EVAL_TASKS / SUITES[n][1] for n in names if n in SUITES))


def suites(names: list[str]) -> dict[str, Suite]:
    """{suite: Suite} for the lm-eval suites among names, read from lm-eval's index of their folders (~1 s)."""
    wanted = [n for n in names if n in SUITES]
    if not wanted:
        return {}
    from lm_eval.tasks import TaskManager

    index = TaskManager(include_path=[str(p) for p in suite_folders(wanted)], include_defaults=False).task_index
    out = {}
    for name in wanted:
        entry = index[name]
        kind = entry.kind.name
        rows = [name, *_children(entry)] if kind == "GROUP" else sorted(entry.tags) if kind == "TAG" else [name]
        out[name] = Suite(name, [_leaf(index[t]) for t in _leaf_names(index, name)], rows)
    return out


def _children(entry) -> list[str]:
    return [c if isinstance(c, str) else c.get("task") or c.get("group") for c in entry.cfg.get("task", [])]


def _leaf_names(index, name: str) -> list[str]:
    entry = index[name]
    if entry.kind.name == "GROUP":
        return [leaf for child in _children(entry) for leaf in _leaf_names(index, child)]
    if entry.kind.name == "TAG":
        return [leaf for task in sorted(entry.tags) for leaf in _leaf_names(index, task)]
    return [name]


def _leaf(entry) -> Leaf:
    cfg = entry.cfg  # includes resolved, !function left unresolved
    path = cfg.get("dataset_path")
    splits = {key: cfg[key] for key in SPLIT_KEYS if cfg.get(key)}
    return Leaf(entry.name, Path(entry.yaml_path), (path, cfg.get("dataset_name")) if path else None, splits,
                COLUMNS.get(path, ()))
