"""`kotune eval RUN_DIR`: KoBEST and KLUE STS/YNAT through lm-eval-harness, scored like the KIT-19 table.

    kotune eval runs/polyglot-qlora                                  # the KIT-19 table's six tasks, 0-shot
    kotune eval runs/polyglot-qlora --baseline base --num_fewshot 5  # the adapter's base model beside it
    kotune eval runs/merged --tasks kobest_copa,klue_sts --data_dir data/eval --limit 100
    kotune eval runs/polyglot-qlora --tasks kobest --num_fewshot 0,1,2,5,10 --baseline base  # KoQuality's table

RUN_DIR is a LoRA adapter (adapter_config.json names its base) or a merged/full model dir. An adapter is loaded
by kotune as it was trained (a 4-bit or 8-bit base quantized as in training, then dequantized) and handed to
lm-eval; lm-eval's own `peft=` would score a QLoRA adapter on an unquantized base. --baseline also takes a Hub id. The scoring is lm-eval's (log-likelihood of each choice), not ours: KoBEST comes with
lm-eval 0.4.13, KLUE STS/YNAT are task YAMLs in `kotune/eval_tasks/` (prompts of lm-eval's old `polyglot` branch,
which KIT-19 reports). Every task reports acc and macro F1 (KoBEST HellaSwag also acc_norm).

Written to OUT (default RUN_DIR/eval): `results.json` (scores + lm-eval's raw results and task configs),
`results.md` (the KIT-19-shaped table) and, when the baseline is a model, `baseline.json` (reusable as
`--baseline OUT/baseline.json`).

Offline (air-gapped, or HF_HUB_OFFLINE=1): `--data_dir DIR` reads DIR/<task>/{train,validation,test}.jsonl in
the Hub's columns. kotune generates, per task, a YAML that `include`s lm-eval's (or its own) task and only swaps
the dataset for `json` over those files, so prompts and metrics stay lm-eval's.

Python API (sweeps call this; it raises KotuneError for user mistakes)::

    from kotune.evaluate import evaluate_run
    scores = evaluate_run("runs/a", tasks=["kobest_copa", "klue_sts"], num_fewshot=0, limit=None,
                          out_dir=None, data_dir=None, baseline=None)
    # {"kobest_copa": {"acc": 0.83, "macro_f1": 0.83}, "klue_sts": {"acc": 0.61, "macro_f1": 0.58}}
    # num_fewshot=[0, 5] -> {"0-shot": {task: {...}}, "5-shot": {task: {...}}}
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from kotune.errors import KotuneError
from kotune.eval_tasks import KIT19_TASKS, TASKS, TASKS_DIR, eval_split_files, local_task_dir, resolve_tasks

__all__ = ["KIT19_TASKS", "TASKS", "evaluate_run", "main", "resolve_tasks"]

logger = logging.getLogger("kotune.evaluate")
METRICS = (("acc", "ACC"), ("acc_norm", "ACC_Norm"), ("macro_f1", "F1 (macro)"))


# --- what to run ---------------------------------------------------------------------------------------------
def model_args_for(model_dir: str | Path, base: str | None = None, hub_ok: bool = False) -> dict[str, str]:
    """What to score, as lm-eval `hf` model_args: `pretrained=BASE,peft=DIR` for an adapter (BASE: the raw base
    under any chained adapters, or `base`), else `pretrained=DIR`. The tokenizer comes from the run dir when it
    saved one (it carries the chat template and pad token). hub_ok: a Hub id is fine too (baselines)."""
    path = Path(model_dir).expanduser()
    if not path.is_dir():
        if hub_ok and not str(model_dir).startswith((".", "/", "~")) and not path.exists():
            return {"pretrained": _hub_model(str(model_dir)), "tokenizer": str(model_dir)}
        raise KotuneError(f"run dir '{model_dir}' does not exist (give a training output_dir or a model dir)")
    tokenizer = str(path) if (path / "tokenizer_config.json").is_file() else None
    if (path / "adapter_config.json").is_file():
        from kotune.generate import adapter_chain

        root = str(adapter_chain(path, base)[0])
        if (root.startswith((".", "/", "~")) or Path(root).expanduser().exists()) and not Path(root).expanduser().is_dir():
            raise KotuneError(f"the adapter's base '{root}' does not exist here: give its location with --base DIR")
        return {"pretrained": root, "peft": str(path), "tokenizer": tokenizer or root}
    if (path / "config.json").is_file():
        return {"pretrained": str(path), "tokenizer": tokenizer or str(path)}
    raise KotuneError(f"'{model_dir}' holds neither adapter_config.json (a LoRA run) nor config.json (a model)")


def _hub_model(name: str) -> str:
    """A Hub model id whose config resolves (cached or online), else the one-line error, before any data loads."""
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as err:
        raise KotuneError(f"'{name}' is neither a local model dir nor a Hub model this machine can reach "
                          f"({str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__})") from None
    return name


def lm_eval_model(model_args: dict[str, str], dtype: str, device: str, batch_size: int | str):
    """The lm-eval LM to score with, loaded once for every shot count. A model dir or Hub id: lm-eval's `hf`
    model loads it. An adapter: kotune loads it as trained (a 4/8-bit base quantized exactly as in training,
    then dequantized; chained adapters merged in) and hands lm-eval the model. lm-eval's own `peft=` would put a
    QLoRA adapter on an unquantized base, i.e. on other weights than it learned against."""
    from lm_eval.api.registry import get_model
    from lm_eval.models.huggingface import HFLM

    if "peft" not in model_args:
        return get_model("hf").create_from_arg_obj({**model_args, "dtype": dtype},
                                                   {"batch_size": batch_size, "device": device})
    from kotune.generate import load_for_inference, saved_dtype
    from kotune.models import DTYPES

    torch_dtype = saved_dtype(model_args["pretrained"]) if dtype == "auto" else DTYPES[dtype]
    model, tokenizer = load_for_inference(model_args["peft"], torch_dtype, device, base=model_args["pretrained"])
    return HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)


# --- running lm-eval -----------------------------------------------------------------------------------------
class _DropExpectedWarnings(logging.Filter):
    """lm-eval log lines that never apply to how kotune calls it. KoBEST's YAMLs ask HF `evaluate` for 'f1',
    which fails offline and logs an error, but their macro F1 comes from their own aggregation. Handing lm-eval a
    model kotune loaded (an adapter, as trained) makes it warn twice about a non-string `pretrained`."""

    PREFIXES = ("f1 not found in the evaluate library", "`pretrained` model kwarg is not of type `str`",
                "Passed an already-initialized model through `pretrained`")

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.PREFIXES)


_QUIET = _DropExpectedWarnings()


def task_manager(tasks: list[str], data_dir: str | Path | None, workdir: Path):
    """lm-eval TaskManager over KoBEST + kotune's YAMLs (+ data_dir overrides): 1 s instead of indexing all
    ~15k lm-eval tasks (30 s)."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    for name in ("lm_eval.api.registry", "lm_eval.models.huggingface"):
        logging.getLogger(name).addFilter(_QUIET)  # the same object twice is kept once
    paths = [Path(lm_eval.__file__).parent / "tasks" / "kobest", TASKS_DIR]
    if data_dir is not None:
        paths.append(local_task_dir(tasks, data_dir, workdir))  # later paths override earlier ones
    index_log = logging.getLogger("lm_eval.tasks._index")
    level = index_log.level
    index_log.setLevel(logging.ERROR)  # "Task X overrides existing task": that is the point of data_dir
    try:
        return TaskManager(include_path=[str(p) for p in paths], include_defaults=False)
    finally:
        index_log.setLevel(level)


def load_tasks(manager, tasks: list[str]) -> list:
    """lm-eval Task objects, data loaded before any model, so a missing dataset fails in seconds with the fix.
    (simple_evaluate takes the objects as they are: each dataset is read once.)"""
    problems, loaded = [], []
    for task in tasks:
        try:
            loaded.append(manager.load([task])["tasks"][task])
        except (ConnectionError, FileNotFoundError) as err:
            problems.append(f"{task}: its dataset could not be loaded ({str(err).splitlines()[0]})")
        except Exception as err:  # noqa: BLE001 - datasets raises many types for unreadable files
            if type(err).__name__ not in ("DatasetNotFoundError", "DatasetGenerationError", "ArrowInvalid"):
                raise
            problems.append(f"{task}: its dataset could not be read ({str(err).splitlines()[0]})")
    if problems:
        raise KotuneError("; ".join(problems) + ". Without the Hub, give --data_dir DIR with "
                          "DIR/<task>/test.jsonl (or validation.jsonl) in the Hub dataset's columns")
    return loaded


def check_fewshot_pools(tasks: list, shots: list[int]) -> None:
    """Every task has enough examples to draw the largest shot count from (lm-eval would fail mid-run with
    'Sample larger than population'). Drawing from the scored split itself excludes the question: one more."""
    most = max(shots)
    if most == 0:
        return
    problems = []
    for task in tasks:
        same_split = task.fewshot_cfg.split == task.config.test_split
        need, have = most + same_split, len(task.fewshot_docs() or [])
        if have < need:
            problems.append(f"{task.task_name}: {most}-shot needs {need} examples to draw from, its few-shot split "
                            f"has {have}")
    if problems:
        raise KotuneError("; ".join(problems) + ". Lower --num_fewshot, or add rows to the task's train split "
                          "(with --data_dir: DIR/<task>/train.jsonl)")


def run_lm_eval(lm, label: dict[str, str], tasks: list, manager, num_fewshot: int, limit: float | None,
                apply_chat_template: bool = False) -> dict[str, Any]:
    """One `lm_eval.simple_evaluate` call; returns lm-eval's result dict. The shot count is set on the tasks
    here: simple_evaluate's own num_fewshot never overrides a task whose count is 0, and after a 0-shot pass
    every task's is (a 0-then-5-shot call would silently score 0-shot twice)."""
    import lm_eval

    for task in tasks:
        task.set_config(key="num_fewshot", value=num_fewshot)
    logger.info("lm-eval: %s on %s (%d-shot%s)", ", ".join(t.task_name for t in tasks), label,
                num_fewshot, f", limit {limit}" if limit else "")
    return lm_eval.simple_evaluate(model=lm, tasks=tasks, task_manager=manager, num_fewshot=None, limit=limit,
                                   log_samples=False, apply_chat_template=apply_chat_template)


def evaluate_model(model_args: dict[str, str], shots: list[int], tasks: list, manager, limit, dtype: str,
                   device: str, batch_size, apply_chat_template: bool) -> dict[int, dict[str, Any]]:
    """{shots: lm-eval results} for one model, loaded once (then freed) for all the shot counts."""
    import gc

    lm = lm_eval_model(model_args, dtype, device, batch_size)
    try:
        return {k: run_lm_eval(lm, model_args, tasks, manager, k, limit, apply_chat_template) for k in shots}
    finally:
        del lm
        gc.collect()


def scores_of(raw: dict[str, Any]) -> dict[str, dict[str, float]]:
    """{task: {acc, macro_f1[, acc_norm]}} from lm-eval's results ("f1,none" is macro F1 in these tasks)."""
    out = {}
    for task, metrics in raw["results"].items():
        if task not in TASKS:
            continue
        row = {"acc": metrics.get("acc,none"), "macro_f1": metrics.get("f1,none")}
        if "acc_norm,none" in metrics:
            row["acc_norm"] = metrics["acc_norm,none"]
        out[task] = {k: float(v) for k, v in row.items() if v is not None}
    return out


def _record(model: str, model_args: dict, raws: dict[int, dict], shots, limit, chat: bool) -> dict[str, Any]:
    """results.json / baseline.json. One shot count: tasks {task: scores}; several: tasks {"5-shot": {...}}."""
    keep = ("results", "configs", "versions", "n-shot", "n-samples", "higher_is_better", "lm_eval_version")
    scores = {k: scores_of(raw) for k, raw in raws.items()}
    kept = {k: {key: raw[key] for key in keep if key in raw} for k, raw in raws.items()}
    several = isinstance(shots, list)
    return {"model": model, "model_args": model_args, "num_fewshot": shots, "limit": limit,
            "apply_chat_template": chat,
            "tasks": {shot_key(k): v for k, v in scores.items()} if several else next(iter(scores.values())),
            "lm_eval": {shot_key(k): v for k, v in kept.items()} if several else next(iter(kept.values()))}


def shot_key(shots: int) -> str:
    return f"{shots}-shot"


# --- the table -----------------------------------------------------------------------------------------------
def markdown_table(columns: list[tuple[str, dict[str, dict[str, float]]]], note: str = "") -> str:
    """KIT-19-style table: one block per task, rows ACC / ACC_Norm / F1 (macro), a column per model (the
    evaluated one last), the best value of each row in bold unless all columns tie."""
    lines = ["| Benchmark Dataset | Metric | " + " | ".join(name for name, _ in columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    tasks = [t for t in TASKS if t in columns[-1][1]]  # the last column's tasks: a baseline may have more
    for task in tasks:
        first = True
        for key, label in METRICS:
            values = [scores.get(task, {}).get(key) for _, scores in columns]
            if all(v is None for v in values):
                continue
            known = [v for v in values if v is not None]
            best = max(known) if len(set(known)) > 1 else None  # no bold when every column ties
            cells = ["–" if v is None else (f"**{v:.2%}**" if v == best else f"{v:.2%}")
                     for v in values]
            lines.append(f"| {TASKS[task][0] if first else ''} | {label} | " + " | ".join(cells) + " |")
            first = False
    return "\n".join(lines) + ("\n\n" + note if note else "") + "\n"


def shots_table(rows: list[tuple[str, dict[int, dict[str, dict[str, float]]]]], shots: list[int]) -> str:
    """KoQuality-style table: a row per model, a column per shot count, each cell the mean accuracy over the
    tasks the evaluated model (the last row) was scored on."""
    tasks = [t for t in TASKS if any(t in rows[-1][1].get(k, {}) for k in shots)]
    lines = [f"Mean accuracy over {', '.join(tasks)}", "",
             "| Model | " + " | ".join(shot_key(k) for k in shots) + " |", "|---|" + "---|" * len(shots)]
    for name, by_shot in rows:
        cells = []
        for k in shots:
            accs = [by_shot.get(k, {}).get(t, {}).get("acc") for t in tasks]
            cells.append("–" if None in accs or not accs else f"{sum(accs) / len(accs):.4f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# --- the API -------------------------------------------------------------------------------------------------
def evaluate_run(run_dir: str | Path, tasks: str | list[str] | None = None, num_fewshot: int | list[int] = 0,
                 limit: float | None = None, out_dir: str | Path | None = None, data_dir: str | Path | None = None,
                 baseline: str | Path | None = None, base: str | None = None, batch_size: int | str = 8,
                 device: str | None = None, dtype: str = "auto", apply_chat_template: bool = False) -> dict:
    """Evaluate a run dir; write results.json, results.md (and baseline.json); return {task: {acc, macro_f1}}.

    num_fewshot: one count, or a list (KoQuality's 0/1/2/5/10): each model is loaded once and scored at every
    count, results.md opens with a model × shots table of mean accuracy, and the return value is
    {"5-shot": {task: {...}}, ...}. baseline: a model dir, a Hub id, a results JSON of an earlier `kotune eval`,
    or `base` (the adapter's base model); its scores become the tables' first column. base: where the adapter's
    base lives, if not where it was trained. limit: rows per task (an int) or a share of them (< 1), for quick
    checks only.
    """
    import torch

    names = resolve_tasks(tasks)
    shots = shot_counts(num_fewshot)
    model_args = model_args_for(run_dir, base)
    baseline_args, baseline_scores, baseline_label = _baseline(baseline, model_args, shots, limit)
    if apply_chat_template:
        for args in filter(None, (model_args, baseline_args)):
            if not _has_chat_template(args["tokenizer"]):
                raise KotuneError(f"--apply_chat_template: the tokenizer in {args['tokenizer']} has no chat template "
                                  "(train with kotune, which saves one, or drop the flag)")
    out = Path(out_dir) if out_dir else Path(run_dir) / "eval"
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    settings = dict(limit=limit, dtype=dtype, device=device, batch_size=batch_size,
                    apply_chat_template=apply_chat_template)

    with tempfile.TemporaryDirectory(prefix="kotune-eval-") as work:
        manager = task_manager(names, data_dir, Path(work))
        loaded = load_tasks(manager, names)
        check_fewshot_pools(loaded, shots)
        raws = evaluate_model(model_args, shots, loaded, manager, **settings)
        base_raws = evaluate_model(baseline_args, shots, loaded, manager, **settings) if baseline_args else None

    from lm_eval.utils import handle_non_serializable

    record = _record(str(run_dir), model_args, raws, num_fewshot, limit, apply_chat_template)
    out.mkdir(parents=True, exist_ok=True)
    dump = lambda obj: json.dumps(obj, indent=2, ensure_ascii=False, default=handle_non_serializable)  # noqa: E731
    if base_raws is not None:
        base_record = _record(baseline_args["pretrained"], baseline_args, base_raws, num_fewshot, limit,
                              apply_chat_template)
        (out / "baseline.json").write_text(dump(base_record))
        record["baseline"] = str(out / "baseline.json")
        baseline_scores = {k: scores_of(raw) for k, raw in base_raws.items()}
    elif baseline is not None:
        record["baseline"] = str(baseline)
    (out / "results.json").write_text(dump(record))

    scores = {k: scores_of(raw) for k, raw in raws.items()}
    name = Path(run_dir).resolve().name
    first = next(iter(raws.values()))
    note = (f"lm-eval {first.get('lm_eval_version', '')}, "
            f"rows per task: {', '.join(f'{t} {n}' for t, n in _rows(first).items())}")
    models = ([(baseline_label, baseline_scores)] if baseline_scores is not None else []) + [(name, scores)]
    blocks = [shots_table(models, shots)] if len(shots) > 1 else []
    for k in shots:
        table = markdown_table([(label, by_shot.get(k, {})) for label, by_shot in models], f"{k}-shot, {note}")
        blocks.append(f"### {shot_key(k)}\n\n{table}" if len(shots) > 1 else table)
    (out / "results.md").write_text("\n".join(blocks))
    logger.info("eval results: %s, %s", out / "results.json", out / "results.md")
    return {shot_key(k): v for k, v in scores.items()} if isinstance(num_fewshot, list) else scores[shots[0]]


def shot_counts(num_fewshot) -> list[int]:
    """num_fewshot as a list of distinct counts >= 0; a clear error otherwise."""
    shots = num_fewshot if isinstance(num_fewshot, list) else [num_fewshot]
    if not shots or any(isinstance(k, bool) or not isinstance(k, int) or k < 0 for k in shots):
        raise KotuneError(f"num_fewshot must be a count >= 0 or a list of them (e.g. [0, 1, 2, 5, 10]), "
                          f"got {num_fewshot!r}")
    if len(set(shots)) != len(shots):
        raise KotuneError(f"num_fewshot lists a count twice: {num_fewshot}")
    return shots


def _has_chat_template(tokenizer_dir: str) -> bool:
    path = Path(tokenizer_dir)
    if not path.is_dir():
        return True  # a Hub id: lm-eval will say
    config = path / "tokenizer_config.json"
    return (path / "chat_template.jinja").is_file() or (
        config.is_file() and bool(json.loads(config.read_text()).get("chat_template")))


def _baseline(baseline, model_args: dict, shots: list[int], limit) -> tuple[dict | None, dict | None, str]:
    """(model_args to evaluate, or {shots: scores} already known, and the column label) for --baseline."""
    if baseline is None:
        return None, None, ""
    if str(baseline) == "base" and not Path("base").exists():
        if "peft" not in model_args:
            raise KotuneError("--baseline base needs an adapter run dir (a full model has no base to compare)")
        return (model_args_for(model_args["pretrained"], hub_ok=True), None,
                Path(model_args["pretrained"]).name + " (base)")
    if str(baseline).endswith(".json"):
        if not Path(baseline).is_file():
            raise KotuneError(f"baseline results '{baseline}' do not exist")
        record = json.loads(Path(baseline).read_text())
        by_shot = _recorded_scores(record, shots)
        if by_shot is None:
            raise KotuneError(f"'{baseline}' is neither a kotune eval results.json nor lm-eval's results JSON")
        missing = [k for k in shots if k not in by_shot]
        if missing or record.get("limit", limit) != limit:
            logger.warning("baseline %s was scored at %s shots, limit=%s; this run: %s shots, limit=%s (its column "
                           "stays empty where it has no scores)", baseline, sorted(by_shot), record.get("limit"),
                           shots, limit)
        return None, by_shot, Path(record.get("model") or Path(baseline).stem).name
    label = Path(baseline).resolve().name if Path(baseline).exists() else str(baseline)  # a dir, or a Hub id
    return model_args_for(baseline, hub_ok=True), None, label


def _recorded_scores(record: dict, shots: list[int]) -> dict[int, dict] | None:
    """{shots: {task: scores}} from a kotune results.json (one or several shot counts) or lm-eval's own JSON."""
    recorded = record.get("num_fewshot")
    if isinstance(recorded, list) and isinstance(record.get("tasks"), dict):
        return {int(key.removesuffix("-shot")): v for key, v in record["tasks"].items()}
    if "tasks" in record:
        return {recorded if isinstance(recorded, int) else shots[0]: record["tasks"]}
    if "results" in record:
        counts = set(record.get("n-shot", {}).values())
        return {counts.pop() if len(counts) == 1 else shots[0]: scores_of(record)}
    return None


def _rows(raw: dict) -> dict[str, int]:
    return {t: n.get("effective", n.get("original")) for t, n in raw.get("n-samples", {}).items()}


# --- end of training -----------------------------------------------------------------------------------------
def eval_config_problems(kind: str, tasks: Any, data_dir: Any, check_paths: bool = True, baseline: Any = None,
                         use_peft: bool = True) -> list[str]:
    """Config validation of the eval_* fields, before any training (no lm-eval import: stays fast)."""
    if kind != "sft":
        return [f"eval_tasks: evaluation runs at the end of SFT only; after {kind}, run `kotune eval OUTPUT_DIR`"]
    try:
        names = resolve_tasks(tasks if isinstance(tasks, (str, list)) else str(tasks))
    except KotuneError as err:
        return [f"eval_tasks: {err}"]
    problems = []
    if baseline == "base" and not use_peft:
        problems.append("eval_baseline: 'base' compares an adapter with its base; a full fine-tune has none "
                        "(give the base model's dir instead)")
    elif check_paths and isinstance(baseline, str) and baseline != "base" and not Path(baseline).expanduser().exists():
        if baseline.endswith(".json"):
            problems.append(f"eval_baseline: '{baseline}' does not exist")
        else:
            try:
                model_args_for(baseline, hub_ok=True)  # a Hub id is fine when this machine can reach it
            except KotuneError as err:
                problems.append(f"eval_baseline: {err}")
    if check_paths and isinstance(data_dir, str):
        if not Path(data_dir).expanduser().is_dir():
            problems.append(f"eval_data_dir: '{data_dir}' does not exist")
        else:
            problems += [f"eval_data_dir: {p}" for t in names
                         for p in eval_split_files(t, Path(data_dir).expanduser())[1]]
    return problems


def evaluate_after_training(kot, output_dir: str) -> dict[str, dict[str, float]]:
    """The `eval_*` fields of KotuneArguments applied to a finished run (main process only)."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return evaluate_run(output_dir, kot.eval_tasks, num_fewshot=kot.eval_num_fewshot, limit=kot.eval_limit,
                        data_dir=kot.eval_data_dir, baseline=kot.eval_baseline)


# --- CLI -----------------------------------------------------------------------------------------------------
def _shots(text: str) -> int | list[int]:
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError("give a count or a comma list of counts, e.g. 0,1,2,5,10") from None
    if any(k < 0 for k in counts):
        raise argparse.ArgumentTypeError("counts must be >= 0")
    return counts if "," in text else counts[0]


def _limit(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return int(value) if value >= 1 and value.is_integer() else value


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="kotune eval", description="Score a run dir on KoBEST and KLUE STS/YNAT with lm-eval-harness; "
        "writes results.json and a KIT-19-style results.md (acc and macro F1 per task).")
    parser.add_argument("run_dir", help="training output_dir (LoRA adapter) or a merged/full model dir")
    parser.add_argument("--tasks", default=",".join(KIT19_TASKS),
                        help=f"comma list of {', '.join(TASKS)}, or kit19 | kobest | klue | all "
                             "(default: the KIT-19 table's six)")
    parser.add_argument("--num_fewshot", type=_shots, default=0,
                        help="in-context examples per question (default 0), or a list such as 0,1,2,5,10: "
                             "each model is loaded once and scored at every count")
    parser.add_argument("--limit", type=_limit, default=None,
                        help="rows per task (or a share < 1): quick checks only, scores are not comparable")
    parser.add_argument("--out", default=None, help="output folder (default RUN_DIR/eval)")
    parser.add_argument("--data_dir", default=None,
                        help="read DIR/<task>/{train,validation,test}.jsonl (Hub columns) instead of the Hub")
    parser.add_argument("--baseline", default=None,
                        help="model dir, earlier results.json, or 'base' (the adapter's base): shown beside")
    parser.add_argument("--base", default=None, help="the adapter's base model, if it moved since training")
    parser.add_argument("--batch_size", default="8", help="lm-eval batch size, or 'auto' (default 8)")
    parser.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda when available)")
    parser.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float16", "float32"],
                        help="weights dtype (default auto: the saved one)")
    parser.add_argument("--apply_chat_template", action="store_true",
                        help="wrap each question in the model's chat template (default: plain prompts, as KIT-19)")
    args = parser.parse_args(argv)

    from kotune.run import setup_logging

    setup_logging()
    batch = int(args.batch_size) if args.batch_size.isdigit() else args.batch_size
    evaluate_run(args.run_dir, args.tasks, num_fewshot=args.num_fewshot, limit=args.limit, out_dir=args.out,
                 data_dir=args.data_dir, baseline=args.baseline, base=args.base, batch_size=batch,
                 device=args.device, dtype=args.dtype, apply_chat_template=args.apply_chat_template)
    out = Path(args.out) if args.out else Path(args.run_dir) / "eval"
    print((out / "results.md").read_text(), end="")
    return 0
