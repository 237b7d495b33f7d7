"""Driving lm-eval-harness: what model to score (a run dir as trained, a model dir or a Hub id), loading its
tasks before any model, and one `simple_evaluate` per shot count with the count set on each task."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kotune.errors import KotuneError
from kotune.eval.leaves import LM_EVAL_TASKS, suite_folders
from kotune.eval.local_data import local_task_dir
from kotune.eval.tasks import TASKS_DIR

logger = logging.getLogger("kotune.eval")


# --- what to run ---------------------------------------------------------------------------------------------
def model_args_for(model_dir: str | Path, base: str | None = None, hub_ok: bool = False) -> dict[str, str]:
    """What to score, as lm-eval `hf` model_args: `pretrained=BASE,peft=DIR` for an adapter (BASE: the raw base
    under any chained adapters, or `base`), else `pretrained=DIR`. The tokenizer comes from the run dir when it
    saved one (it carries the chat template and pad token). hub_ok: a Hub id is fine too (baselines)."""
    path = Path(model_dir).expanduser()
    if not path.is_dir():
        if hub_ok and not str(model_dir).startswith((".", "/", "~")) and not path.exists():
            return {"pretrained": hub_model(str(model_dir)), "tokenizer": str(model_dir)}
        raise KotuneError(f"run dir '{model_dir}' does not exist (give a training output_dir or a model dir)")
    tokenizer = str(path) if (path / "tokenizer_config.json").is_file() else None
    if (path / "adapter_config.json").is_file():
        from kotune.inference.loading import adapter_chain

        root = str(adapter_chain(path, base)[0])
        if (root.startswith((".", "/", "~")) or Path(root).expanduser().exists()) and not Path(root).expanduser().is_dir():
            raise KotuneError(f"the adapter's base '{root}' does not exist here: give its location with --base DIR")
        return {"pretrained": root, "peft": str(path), "tokenizer": tokenizer or root}
    if (path / "config.json").is_file():
        return {"pretrained": str(path), "tokenizer": tokenizer or str(path)}
    raise KotuneError(f"'{model_dir}' holds neither adapter_config.json (a LoRA run) nor config.json (a model)")


def hub_model(name: str) -> str:
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
    from kotune.inference.loading import load_for_inference, saved_dtype
    from kotune.models.loading import DTYPES

    torch_dtype = saved_dtype(model_args["pretrained"]) if dtype == "auto" else DTYPES[dtype]
    model, tokenizer = load_for_inference(model_args["peft"], torch_dtype, device, base=model_args["pretrained"])
    return HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size,
                chat_template_args=model_args.get("chat_template_args"))  # the thinking switch (eval --thinking)


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


def task_manager(tasks: list[str], data_dir: str | Path | None, workdir: Path, tree: dict | None = None):
    """lm-eval TaskManager over KoBEST + kotune's YAMLs + the wheel folders of the suites asked for (+ data_dir
    overrides): a second or two instead of indexing all ~15k lm-eval tasks (30 s)."""
    from lm_eval.tasks import TaskManager

    for name in ("lm_eval.api.registry", "lm_eval.models.huggingface"):
        logging.getLogger(name).addFilter(_QUIET)  # the same object twice is kept once
    paths = [LM_EVAL_TASKS / "kobest", TASKS_DIR, *suite_folders(tasks)]
    if data_dir is not None:
        paths.append(local_task_dir(tasks, data_dir, workdir, tree))  # later paths override earlier ones
    index_log = logging.getLogger("lm_eval.tasks._index")
    level = index_log.level
    index_log.setLevel(logging.ERROR)  # "Task X overrides existing task": that is the point of data_dir
    try:
        return TaskManager(include_path=[str(p) for p in paths], include_defaults=False)
    finally:
        index_log.setLevel(level)


def load_tasks(manager, tasks: list[str]) -> list:
    """lm-eval Task and Group objects (a tag: its Tasks), data loaded before any model, so a missing dataset fails
    in seconds with the fix. (simple_evaluate takes the objects as they are: each dataset is read once, and a Group
    keeps lm-eval's aggregate rows, e.g. KMMLU's subject groups.)"""
    problems, loaded = [], []
    for task in tasks:
        try:
            found = manager.load([task])
            top = found["groups"].get(task) or found["tasks"].get(task)
            loaded += [top] if top is not None else list(found["tasks"].values())
        except (ConnectionError, FileNotFoundError) as err:
            problems.append(f"{task}: its dataset could not be loaded ({str(err).splitlines()[0]})")
        except Exception as err:  # noqa: BLE001 - datasets raises many types for unreadable files
            if type(err).__name__ not in ("DatasetNotFoundError", "DatasetGenerationError", "ArrowInvalid"):
                raise
            problems.append(f"{task}: its dataset could not be read ({str(err).splitlines()[0]})")
    if problems:
        raise KotuneError("; ".join(problems) + ". Without the Hub, give --data_dir DIR with DIR/<task>/test.jsonl "
                          "(or validation.jsonl), or a Hub mirror DIR/<dataset>/<config>/<split>.jsonl, in the Hub "
                          "dataset's columns")
    return loaded


def leaf_tasks(loaded: list) -> list:
    """The Task objects under what load_tasks returned (a Group's, recursively)."""
    return [leaf for obj in loaded for leaf in (obj.get_all_tasks() if hasattr(obj, "get_all_tasks") else [obj])]


def check_fewshot_pools(tasks: list, shots: list[int]) -> None:
    """Every task has enough examples to draw the largest shot count from (lm-eval would fail mid-run with
    'Sample larger than population'). Drawing from the scored split itself excludes the question: one more."""
    most = max(shots)
    if most == 0:
        return
    problems = []
    for task in leaf_tasks(tasks):
        same_split = task.fewshot_cfg.split == task.config.test_split
        need, have = most + same_split, len(task.fewshot_docs() or [])
        if have < need:
            problems.append(f"{task.task_name}: {most}-shot needs {need} examples to draw from, its few-shot split "
                            f"has {have}")
    if problems:
        raise KotuneError("; ".join(problems) + ". Lower --num_fewshot, or add rows to the task's train split "
                          "(with --data_dir: DIR/<task>/train.jsonl)")


def run_lm_eval(lm, label: dict[str, str], tasks: list, manager, num_fewshot: int, limit: float | None,
                apply_chat_template: bool = False, gen_kwargs: str | None = None) -> dict[str, Any]:
    """One `lm_eval.simple_evaluate` call; returns lm-eval's result dict. The shot count is set on the tasks
    here: simple_evaluate's own num_fewshot never overrides a task whose count is 0, and after a 0-shot pass
    every task's is (a 0-then-5-shot call would silently score 0-shot twice). gen_kwargs (lm-eval's
    `max_gen_toks=64,...`) is merged into each generation task's own settings."""
    import lm_eval

    for task in leaf_tasks(tasks):
        task.set_config(key="num_fewshot", value=num_fewshot)
    names = [t.name if hasattr(t, "get_all_tasks") else t.task_name for t in tasks]
    logger.info("lm-eval: %s on %s (%d-shot%s)", ", ".join(names), label, num_fewshot,
                f", limit {limit}" if limit else "")
    return lm_eval.simple_evaluate(model=lm, tasks=tasks, task_manager=manager, num_fewshot=None, limit=limit,
                                   log_samples=False, apply_chat_template=apply_chat_template,
                                   gen_kwargs=gen_kwargs)


def evaluate_model(model_args: dict[str, str], shots: list[int], tasks: list, manager, limit, dtype: str,
                   device: str, batch_size, apply_chat_template: bool,
                   gen_kwargs: str | None = None) -> dict[int, dict[str, Any]]:
    """{shots: lm-eval results} for one model, loaded once (then freed) for all the shot counts."""
    import gc

    lm = lm_eval_model(model_args, dtype, device, batch_size)
    try:
        return {k: run_lm_eval(lm, model_args, tasks, manager, k, limit, apply_chat_template, gen_kwargs)
                for k in shots}
    finally:
        del lm
        gc.collect()


