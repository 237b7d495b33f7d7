"""The tasks `kotune eval` knows, and local-data versions of them.

The YAMLs in `lm_eval_tasks/` are lm-eval task configs that lm-eval 0.4.13 lacks (KLUE STS and YNAT), found through
`TaskManager(include_path=...)`. `local_task_dir` points any known task at DIR/<task>/*.jsonl: it writes a YAML that
`include`s the real task and swaps only the dataset, so prompts and metrics stay lm-eval's.
"""

from __future__ import annotations

import difflib
import json
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
KIT19_TASKS = ("kobest_copa", "kobest_boolq", "kobest_hellaswag", "klue_sts", "kobest_sentineg", "klue_ynat")
ALIASES = {
    "kit19": KIT19_TASKS,
    "kobest": ("kobest_boolq", "kobest_copa", "kobest_hellaswag", "kobest_sentineg", "kobest_wic"),
    "klue": ("klue_sts", "klue_ynat"),
    "all": tuple(TASKS),
}
SPLITS = {"train": "training_split", "validation": "validation_split", "test": "test_split"}  # file → lm-eval key


def resolve_tasks(tasks: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """Task names in table order. Accepts a comma list or a list; `kit19`, `kobest`, `klue`, `all` expand."""
    if tasks is None:
        return list(KIT19_TASKS)
    items = tasks.split(",") if isinstance(tasks, str) else [p for t in tasks for p in str(t).split(",")]
    names, problems = [], []
    for item in (i.strip() for i in items):
        if not item:
            continue
        if item in ALIASES or item in TASKS:
            names += [n for n in ALIASES.get(item, (item,)) if n not in names]
            continue
        near = difflib.get_close_matches(item, [*TASKS, *ALIASES], n=1, cutoff=0.6)
        hint = f": did you mean '{near[0]}'?" if near else f" (known: {', '.join([*TASKS, *ALIASES])})"
        problems.append(f"unknown eval task '{item}'{hint}")
    if problems:
        raise KotuneError("; ".join(problems))
    if not names:
        raise KotuneError(f"no eval tasks given; choose from {', '.join([*TASKS, *ALIASES])}")
    return sorted(names, key=list(TASKS).index)



def eval_split_files(task: str, data_dir: Path) -> tuple[dict[str, str], list[str]]:
    """DIR/<task>/{train,validation,test}.jsonl (or .json) that exist, and the problems found."""
    task_dir = data_dir / task
    files = {}
    for split in SPLITS:
        for ext in (".jsonl", ".json"):
            if (task_dir / f"{split}{ext}").is_file():
                files[split] = str(task_dir / f"{split}{ext}")
                break
    if "validation" not in files and "test" not in files:
        return files, [f"{task}: no data file: expected {task_dir}/test.jsonl or {task_dir}/validation.jsonl "
                       f"(optionally train.jsonl for few-shot), rows with {', '.join(TASKS[task][1])}"]
    eval_file = Path(files.get("test", files.get("validation")))
    text = eval_file.read_text(encoding="utf-8")
    try:  # a .json file may hold one list of rows or JSON Lines, as `datasets` accepts both
        row = json.loads(text)[0] if text.lstrip().startswith("[") else json.loads(text.lstrip().splitlines()[0])
    except (ValueError, IndexError) as err:
        return files, [f"{task}: {eval_file} holds no JSON rows ({err})"]
    missing = [c for c in TASKS[task][1] if c not in row]
    if missing:
        return files, [f"{task}: {eval_file} lacks column(s) {', '.join(missing)} (the Hub dataset's layout)"]
    return files, []


def local_task_dir(tasks: list[str], data_dir: str | Path, into: Path) -> Path:
    """Write one YAML per task into `into` that includes the real task and reads data_dir's files instead."""
    import lm_eval

    data_dir = Path(data_dir).expanduser().resolve()
    if not data_dir.is_dir():
        raise KotuneError(f"data_dir '{data_dir}' does not exist")
    kobest = Path(lm_eval.__file__).parent / "tasks" / "kobest"
    problems = []
    for task in tasks:
        files, found = eval_split_files(task, data_dir)
        problems += found
        if found:
            continue
        source = (kobest if task.startswith("kobest_") else TASKS_DIR) / f"{task}.yaml"
        cfg = {"include": str(source), "task": task, "dataset_path": "json", "dataset_name": None,
               "dataset_kwargs": {"data_files": files},
               **{key: split if split in files else None for split, key in SPLITS.items()}}
        (into / f"{task}.yaml").write_text(json.dumps(cfg, ensure_ascii=False, indent=1))  # JSON is valid YAML
    if problems:
        raise KotuneError("--data_dir: " + "; ".join(problems))
    return into
