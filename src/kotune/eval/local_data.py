"""`--data_dir DIR`: every leaf task reads local JSON files instead of the Hub, through lm-eval's own YAMLs.

For each leaf, kotune writes a YAML that `include`s the real task and swaps only the dataset for `json` over the
files found, so prompts, filters and metrics stay lm-eval's. A leaf's files are looked for in
  DIR/<task>/<split>.jsonl                              (KoBEST and KLUE, e.g. DIR/kobest_copa/test.jsonl), then
  DIR/<Hub dataset path>/<config>/<split>.jsonl         (a mirror of the Hub, shared by the tasks that read it:
                                                         DIR/HAERAE-HUB/KMMLU/Accounting/test.jsonl,
                                                         DIR/EunsuKim/CLIcK/train.jsonl for all of CLIcK)
with the split names the task's YAML reads (`.json` works too). A split without a file is dropped from the task
(few-shot then draws from what is left, as lm-eval does); the scored split (test, else validation) is required.
"""

from __future__ import annotations

import json
from pathlib import Path

from kotune.errors import KotuneError
from kotune.eval.leaves import Leaf, Suite, kit19_leaf, suites
from kotune.eval.tasks import TASKS

MANY = 3  # a suite with more leaves than this lacking files gets one summary line instead of one per leaf


def leaves_of(names: list[str], tree: dict[str, Suite] | None = None) -> dict[str, list[Leaf]]:
    """{name: its leaves}; KIT-19 tasks without lm-eval, suites through lm-eval's index (or `tree`, if read)."""
    found = suites(names) if tree is None else tree
    return {n: [kit19_leaf(n)] if n in TASKS else found[n].leaves for n in names}


def leaf_files(leaf: Leaf, data_dir: Path) -> tuple[dict[str, str], list[str]]:
    """{split name: file} for a leaf under data_dir, and the problems found (no scored split, missing columns)."""
    dirs = [data_dir / leaf.name]
    if leaf.dataset:
        dirs.append(data_dir / leaf.dataset[0] / (leaf.dataset[1] or ""))
    files: dict[str, str] = {}
    for folder in dirs:
        for split in dict.fromkeys(leaf.splits.values()):
            for ext in (".jsonl", ".json"):
                if (folder / f"{split}{ext}").is_file():
                    files[split] = str(folder / f"{split}{ext}")
                    break
        if files:
            break
    scored = [leaf.splits[k] for k in ("test_split", "validation_split") if k in leaf.splits]
    if not any(s in files for s in scored):
        folder = dirs[-1]
        other = sorted(set(leaf.splits.values()) - set(scored))
        fewshot = f" (optionally {' / '.join(f'{s}.jsonl' for s in other)} for few-shot)" if other else ""
        where = " or ".join(f"{folder}/{s}.jsonl" for s in scored)
        alt = f" (or the same in {dirs[0]}/)" if len(dirs) > 1 else ""
        cols = f", rows with {', '.join(leaf.columns)}" if leaf.columns else ""
        return files, [f"{leaf.name}: no data file: expected {where}{alt}{fewshot}{cols}"]
    eval_file = Path(next(files[s] for s in scored if s in files))
    text = eval_file.read_text(encoding="utf-8")
    try:  # a .json file may hold one list of rows or JSON Lines, as `datasets` accepts both
        row = json.loads(text)[0] if text.lstrip().startswith("[") else json.loads(text.lstrip().splitlines()[0])
    except (ValueError, IndexError) as err:
        return files, [f"{leaf.name}: {eval_file} holds no JSON rows ({err})"]
    missing = [c for c in leaf.columns if c not in row]
    if missing:
        return files, [f"{leaf.name}: {eval_file} lacks column(s) {', '.join(missing)} (the Hub dataset's layout)"]
    return files, []


def data_dir_problems(names: list[str], data_dir: Path, leaves: dict[str, list[Leaf]] | None = None) -> list[str]:
    """Every problem with data_dir for these names, a suite with many missing leaves summarized in one line."""
    problems = []
    for name, leaves in (leaves or leaves_of(names)).items():
        found = [(leaf, leaf_files(leaf, data_dir)[1]) for leaf in leaves]
        bad = [(leaf, p) for leaf, p in found if p]
        if len(bad) > MANY:
            example = bad[0][1][0].split(": ", 1)[1]
            shown = ", ".join(leaf.name for leaf, _ in bad[:MANY])
            problems.append(f"{name}: {len(bad)} of its {len(leaves)} tasks lack data ({shown}, ...); "
                            f"for {bad[0][0].name}: {example}")
        else:
            problems += [p for _, ps in bad for p in ps]
    return problems


def local_task_dir(names: list[str], data_dir: str | Path, into: Path, tree: dict[str, Suite] | None = None) -> Path:
    """Write one YAML per leaf into `into` that includes the real task and reads data_dir's files instead."""
    data_dir = Path(data_dir).expanduser().resolve()
    if not data_dir.is_dir():
        raise KotuneError(f"data_dir '{data_dir}' does not exist")
    by_name = leaves_of(names, tree)
    problems = data_dir_problems(names, data_dir, by_name)
    if problems:
        raise KotuneError("--data_dir: " + "; ".join(problems))
    for leaves in by_name.values():
        for leaf in leaves:
            files, _ = leaf_files(leaf, data_dir)
            cfg = {"include": str(leaf.yaml), "task": leaf.name, "dataset_path": "json", "dataset_name": None,
                   "dataset_kwargs": {"data_files": files},
                   **{key: split if split in files else None for key, split in leaf.splits.items()}}
            (into / f"{leaf.name}.yaml").write_text(json.dumps(cfg, ensure_ascii=False, indent=1))  # valid YAML
    return into
