"""Check a raw config (YAML + overrides) against the stage's schema, all at once, before anything heavy loads.

Every problem is collected and reported in one `ConfigError`; an unknown key names the nearest valid one. The
checks read kotune's dataclasses and the stored TRL/transformers field schema only (no torch, no TRL), so a
typo is reported in about a second. `build_config` then builds the libraries' own objects (`kotune.config.library`)
and reports what they refuse the same way.
"""

from __future__ import annotations

import difflib
import logging
from pathlib import Path
from typing import Any, Iterable

from kotune.config.library_schema import MODEL_CONFIG, fields_of
from kotune.config.path_checks import is_local_path, path_problems
from kotune.config.sharding import deepspeed_problems, fsdp_config_problems, fsdp_keys
from kotune.config.recipes import attention_fallback, template_problems, translate
from kotune.config.schema import (RANGES, RENAMED, TRAINING_DEFAULTS, TRAINING_FORCED, DatasetMixture,
                                  DatasetSource, KotuneArguments, RunConfig)
from kotune.config.types import coerce, dataclass_fields
from kotune.data.formats import FORMAT_NAMES
from kotune.errors import ConfigError
from kotune.eval.checks import eval_config_problems
from kotune.stages.registry import STAGES, get_stage, stages_with
from kotune.stages.trackers import tracker_problems

logger = logging.getLogger("kotune.config")


def suggest(key: str, valid: Iterable[str]) -> str:
    """': did you mean 'x'?' for the nearest valid key, or ''."""
    near = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.6)
    return f": did you mean '{near[0]}'?" if near else ""


def field_groups(stage: str) -> dict[str, dict[str, dict]]:
    """{"kotune" | "model" | "training": {key: {type, help, choices}}} for a stage."""
    return {"kotune": dataclass_fields(KotuneArguments), "model": fields_of(MODEL_CONFIG),
            "training": fields_of(get_stage(stage).training_config)}


def field_help(stage: str = "sft") -> list[tuple[str, str]]:
    """(name, help) for every accepted key, for `--help`."""
    return [(name, spec["help"]) for group in field_groups(stage).values() for name, spec in group.items()]


def _check_fields(values: dict[str, Any], specs: dict[str, dict], where: str, problems: list[str]) -> dict:
    """Type-check `values` against field specs; return the coerced values."""
    out = {}
    for key, value in values.items():
        try:
            value = coerce(value, specs[key]["type"])
        except TypeError as err:
            problems.append(f"{where}{key}: expected {err}, got {value!r} ({type(value).__name__})")
            continue
        choices = specs[key].get("choices")
        if choices and value is not None and value not in choices:
            problems.append(f"{where}{key}: {value!r} is not one of {', '.join(map(str, choices))}")
            continue
        out[key] = value
    return out


def _check_ranges(values: dict[str, Any], problems: list[str], stage: str = "sft") -> None:
    for key, (low, high, why) in {**RANGES, **dict(get_stage(stage).ranges)}.items():
        value = values.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        low_ok = low is None or (value >= low[0] if isinstance(low, list) else value > low)
        high_ok = high is None or (value <= high[0] if isinstance(high, list) else value < high)
        if not (low_ok and high_ok):
            bounds = [f"{'>=' if isinstance(low, list) else '>'} {low[0] if isinstance(low, list) else low}"
                      if low is not None else "",
                      f"{'<=' if isinstance(high, list) else '<'} {high[0] if isinstance(high, list) else high}"
                      if high is not None else ""]
            problems.append(f"{key}: {value!r} is out of range: must be {' and '.join(b for b in bounds if b)} "
                            f"({why})")


def _build_mixture(raw: Any, stage: str, problems: list[str]) -> DatasetMixture | None:
    where = "dataset_mixture"
    if raw is None:
        return None
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected a mapping with 'datasets' (and optionally 'seed'), got {raw!r}")
        return None
    valid = dataclass_fields(DatasetMixture)
    for key in raw:
        if key not in valid:
            problems.append(f"{where}.{key}: unknown key{suggest(key, valid)}")
    values = _check_fields({k: v for k, v in raw.items() if k in valid and k != "datasets"}, valid, f"{where}.",
                           problems)
    items = raw.get("datasets")
    if not isinstance(items, list) or not items:
        problems.append(f"{where}.datasets: give a non-empty list of sources, e.g. "
                        "[{id: data.jsonl, format: instruction}]")
        return None
    sources = [_build_source(item, f"{where}.datasets[{i}].", stage, problems) for i, item in enumerate(items)]
    shares = [isinstance(item, dict) and item.get("share") is not None for item in items]
    if any(shares) and not all(shares):
        problems.append(f"{where}: share is set on some sources only: give every source a share (its part of the "
                        "mixture), or none")
    if any(shares) and any(isinstance(item, dict) and "weight" in item for item in items):
        problems.append(f"{where}: share and weight in one mixture: share sets each source's part of the whole, "
                        "weight a fraction of one source's rows; use one of them")
    if problems:
        return None
    mixture = DatasetMixture(datasets=sources, **values)
    mixture.formats = get_stage(stage).data_formats
    return mixture


def _build_source(item: Any, here: str, stage: str, problems: list[str]) -> DatasetSource | None:
    if not isinstance(item, dict):
        problems.append(f"{here[:-1]}: expected a mapping like {{id: ..., format: ...}}, got {item!r}")
        return None
    src_fields = dataclass_fields(DatasetSource)
    for key in item:
        if key not in src_fields:
            alias = RENAMED.get(key)
            problems.append(f"{here}{key}: unknown key{f': use {alias!r}' if alias else suggest(key, src_fields)}")
    missing = [k for k in ("id",) if k not in item]
    for k in missing:
        problems.append(f"{here}{k}: required (every source needs an id: a file or a Hub dataset)")
    vals = _check_fields({k: v for k, v in item.items() if k in src_fields}, src_fields, here, problems)
    fmt = vals.get("format")
    if fmt is not None and fmt not in FORMAT_NAMES and not fmt.startswith("kit19/"):
        problems.append(f"{here}format: {fmt!r} is not one of {', '.join(FORMAT_NAMES)} or kit19/<task>"
                        f"{suggest(fmt, FORMAT_NAMES)}")
    elif fmt is not None and not get_stage(stage).reads_format(fmt):
        readers = [s.name for s in STAGES.values() if s.reads_format(fmt)]
        reads = ", ".join(f.replace("kit19/", "kit19/<task>") for f in get_stage(stage).data_formats)
        problems.append(f"{here}format: {stage.upper()} needs format: {reads}, not {fmt!r}"
                        + (f" (that is data for {', '.join(r.upper() for r in readers)})" if readers else ""))
    if "weight" in vals and not vals["weight"] > 0:
        problems.append(f"{here}weight: must be > 0 (the fraction of this source's rows to use; 1.0 = each row once)")
    if vals.get("share") is not None and not vals["share"] > 0:
        problems.append(f"{here}share: must be > 0 (this source's part of the mixture)")
    if vals.get("config") and "id" in vals and is_local_path(vals["id"]):
        problems.append(f"{here}config: names a Hub dataset's subset; '{vals['id']}' is a local file: remove config")
    if vals.get("max_samples") is not None and vals["max_samples"] < 1:
        problems.append(f"{here}max_samples: must be >= 1 (or leave it out for no cap)")
    columns = vals.get("columns", {})
    if isinstance(columns, dict) and any(not isinstance(k, str) or not isinstance(v, str) for k, v in columns.items()):
        problems.append(f"{here}columns: map kotune field names to your column names, both strings")
    if missing or len(vals) != len([k for k in item if k in src_fields]):
        return None
    return DatasetSource(**vals)


def check_config(raw: dict[str, Any], stage: str = "sft", check_paths: bool = True):
    """(kotune values, mixture, model values, training values, defaults applied, problems). No heavy imports."""
    groups = field_groups(stage)
    valid = set().union(*groups.values())
    translation = translate(raw, stage, valid)
    raw, problems = translation.raw, list(translation.problems)
    raw = fsdp_keys(raw, problems)
    for key in raw:
        if key in RENAMED and key not in valid:
            problems.append(f"{key}: unknown key: use {RENAMED[key]}")
        elif key not in valid:
            problems.append(f"{key}: unknown key{suggest(key, valid)}")

    user = {k: v for k, v in raw.items() if k in valid}
    if user.get("deepspeed") is False:  # `--deepspeed=false` turns off a base config's DeepSpeed
        user["deepspeed"] = None
    if isinstance(user.get("resume_from_checkpoint"), bool):  # `true` = the last complete checkpoint in output_dir
        user["resume_from_checkpoint"] = "true" if user["resume_from_checkpoint"] else None
    if isinstance(user.get("thinking"), bool):  # YAML 1.1 reads a bare `thinking: on` as true
        user["thinking"] = "on" if user["thinking"] else "off"
    applied = {}
    for key, value in {**TRAINING_DEFAULTS, **dict(get_stage(stage).defaults)}.items():
        if key not in user and key in groups["training"]:
            user[key] = applied[key] = value
    for key, value in TRAINING_FORCED.items():
        if key in groups["training"]:
            if key in user and user[key] != value:
                logger.warning("%s=%r is overridden to %r by kotune", key, user[key], value)
            user[key] = value

    kotune = _check_fields({k: v for k, v in user.items() if k in groups["kotune"] and k != "dataset_mixture"},
                           groups["kotune"], "", problems)
    mixture = _build_mixture(user.get("dataset_mixture"), stage, problems)
    model = _check_fields({k: v for k, v in user.items() if k in groups["model"]}, groups["model"], "", problems)
    training = _check_fields({k: v for k, v in user.items() if k in groups["training"] and k not in groups["kotune"]},
                             groups["training"], "", problems)  # kotune's own chat_template_path wins over TRL's
    _check_ranges({**kotune, **model, **training}, problems, stage)
    _check_eval_split(user, kotune, training, applied, groups["training"], problems)
    _cross_check(user, model, training, stage, problems, check_paths)
    if check_paths and mixture is not None and "reward_funcs" in get_stage(stage).kotune_keys and \
            isinstance(kotune.get("reward_funcs"), list):
        from kotune.stages.reward_columns import reward_column_problems

        problems += reward_column_problems(kotune["reward_funcs"], mixture)
    return kotune, mixture, model, training, applied, problems


def build_config(raw: dict[str, Any], stage: str = "sft", source: str = "config", check_paths: bool = True,
                 ) -> RunConfig:
    """Check `raw` for `stage`, then build TRL's objects; every problem is raised in one ConfigError.

    `check_paths=False` validates a recipe on a machine that lacks its local model dir (tests of shipped YAML).
    The training config is built without `deepspeed`: DeepSpeed's process group belongs to the start of a run
    (`kotune.stages.distributed.start` rebuilds it then). Under a multi-process launcher, TrainingArguments still
    reads the launcher's environment when it is built (accelerate's PartialState), as it always did.
    """
    translation = translate(raw, stage, set().union(*field_groups(stage).values()))
    raw = translation.raw
    kotune, mixture, model, training, applied, problems = check_config(raw, stage, check_paths)
    problems = translation.problems + problems
    if problems:
        raise ConfigError(problems, source)
    for note in translation.notes:
        logger.info("recipe: %s", note)

    import torch

    from kotune.config.library import build_model_config, build_training_config, library_problems

    from kotune.config.hardware import hardware_defaults

    if not torch.cuda.is_available() and "use_cpu" not in training:
        training["use_cpu"] = applied["use_cpu"] = True  # TRL's bf16 default otherwise fails on a CPU-only machine
    chosen, hardware = hardware_defaults(training)
    training.update(chosen)
    applied.update(chosen)
    model_args, problem = build_model_config(model)
    problems += [problem] if problem else library_problems(model_args, get_stage(stage).lora_task_type)
    args, problem = build_training_config(get_stage(stage).training_config,
                                          {k: v for k, v in training.items() if k != "deepspeed"})
    problems += [problem] if problem else []
    if problems:
        raise ConfigError(problems, source)
    for key, value in applied.items():
        logger.info("kotune default: %s=%r (set it in your config to change)", key, value)
    resolved = {**raw, **applied}
    for key, why in hardware.items():
        logger.info("%s: %s", key, why)
    return RunConfig(stage=stage, kotune=KotuneArguments(dataset_mixture=mixture, **kotune), model=model_args,
                     training=args, resolved=resolved, source=source, training_values=training, hardware=hardware)


def _cross_check(user: dict, model: dict, train: dict, stage: str, problems: list[str], check_paths: bool) -> None:
    """Combinations that cannot work, each with the setting that fixes it."""
    if model.get("load_in_4bit") and model.get("load_in_8bit"):
        problems.append("load_in_4bit and load_in_8bit are both true: choose one (4-bit NF4 is QLoRA)")
    if (model.get("load_in_4bit") or model.get("load_in_8bit")) and not model.get("use_peft"):
        problems.append("a quantized base (load_in_4bit/load_in_8bit) cannot be fully fine-tuned: "
                        "set use_peft: true, or drop the quantization for full fine-tuning")
    name = model.get("model_name_or_path")
    if not name:
        problems.append("model_name_or_path: required (a local model dir or a Hub id)")
    elif check_paths and is_local_path(name) and not Path(name).expanduser().exists():
        problems.append(f"model_name_or_path: '{name}' does not exist")
    if not train.get("output_dir"):
        problems.append("output_dir: required (where the model, checkpoints and logs go)")
    problems += _length_problems(train)
    if user.get("dataset_mixture") is None:
        problems.append("dataset_mixture: required, e.g. {datasets: [{id: data/train.jsonl, format: instruction}]}")
    if user.get("overwrite_output_dir") and train.get("resume_from_checkpoint"):
        problems.append("overwrite_output_dir and resume_from_checkpoint contradict each other: choose one")
    if check_paths:
        problems += path_problems(user, train)
    if train.get("deepspeed"):
        problems += deepspeed_problems(train["deepspeed"], model)
    problems += fsdp_config_problems(train, model)
    problems += tracker_problems(train.get("report_to"))
    if user.get("eval_tasks"):
        problems += eval_config_problems(stage, user["eval_tasks"], user.get("eval_data_dir"), check_paths,
                                         user.get("eval_baseline"), bool(model.get("use_peft")))
    for key in {k for s in STAGES.values() for k in s.kotune_keys}:
        if user.get(key) is not None and key not in get_stage(stage).kotune_keys:
            users = stages_with(key)
            problems.append(f"{key}: only used by {', '.join(s.upper() for s in users)} "
                            f"({', '.join(get_stage(s).entry_script for s in users)}); {stage} does not read it")
    if "reward_funcs" in get_stage(stage).kotune_keys:
        from kotune.stages.rewards import reward_config_problems

        problems += reward_config_problems(user.get("reward_funcs"))
    problems += template_problems(user, check_paths)
    for key, allowed, why in get_stage(stage).choices:
        if train.get(key) is not None and train[key] not in allowed:
            problems.append(f"{key}: {train[key]!r} does not fit the {stage} stage ({', '.join(allowed)}): {why}")
    attention_fallback(model)
    mpl = user.get("max_prompt_length")
    if "max_prompt_length" in get_stage(stage).kotune_keys and isinstance(mpl, int) and train.get("max_length") \
            and mpl >= train["max_length"]:
        problems.append(f"max_prompt_length ({mpl}) must be smaller than max_length ({train['max_length']}), "
                        "or no answer token fits")


def _length_problems(train: dict) -> list[str]:
    """Zero steps or epochs: the run would save an untrained model and exit 0."""
    steps, epochs = train.get("max_steps"), train.get("num_train_epochs")
    if steps == 0:
        return ["max_steps: 0 trains nothing; give a positive number of optimizer steps, or leave it out (-1) to "
                "train for num_train_epochs"]
    if (steps is None or steps < 0) and isinstance(epochs, (int, float)) and epochs <= 0:
        return [f"num_train_epochs: {epochs!r} trains nothing; give a positive number of epochs (e.g. 1, or 0.5 for "
                "half the data), or set max_steps > 0"]
    return []


def _check_eval_split(user: dict, kotune: dict, train: dict, applied: dict, train_fields: dict,
                      problems: list[str]) -> None:
    """An eval split, the evaluation schedule and early stopping must agree; with an eval split and no schedule,
    kotune evaluates every logging_steps."""
    sources = (user.get("dataset_mixture") or {}).get("datasets") if isinstance(user.get("dataset_mixture"), dict) \
        else None
    sources = sources if isinstance(sources, list) else []
    evals = [s for s in sources if isinstance(s, dict) and s.get("eval") is True]
    has_eval = bool(evals) or kotune.get("eval_split_size") is not None
    if sources and len(evals) == len(sources):
        problems.append("dataset_mixture: every source is eval: true; training needs at least one training source")
    strategy = train.get("eval_strategy")
    if has_eval and strategy is None and "eval_strategy" in train_fields:
        train["eval_strategy"] = applied["eval_strategy"] = "steps"  # eval_steps then defaults to logging_steps
    elif not has_eval and strategy not in (None, "no"):
        problems.append(f"eval_strategy: '{strategy}' needs an eval split: set eval_split_size (e.g. 0.05) or mark a "
                        "source with eval: true")
    if not has_eval and train.get("load_best_model_at_end"):
        problems.append("load_best_model_at_end needs an eval split: set eval_split_size or an eval: true source")
    if kotune.get("early_stopping_patience") is not None and not train.get("load_best_model_at_end"):
        problems.append("early_stopping_patience needs load_best_model_at_end: true (it stops on "
                        "metric_for_best_model, default eval_loss), with save_strategy equal to eval_strategy")
