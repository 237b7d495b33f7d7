"""One typed config: YAML, then `--key=value` overrides, validated all at once.

Field names are TRL's and transformers' wherever they have one (`ModelConfig`, `SFTConfig`/`DPOConfig`);
kotune adds only what they lack (`dataset_mixture`, `prompt_format`, `overwrite_output_dir`, ...).
Every problem is collected and reported in one `ConfigError`; an unknown key names the nearest valid one.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import logging
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from kotune.errors import ConfigError

logger = logging.getLogger(__name__)

PROMPT_FORMATS = ("auto", "komt", "koquality", "llama2", "mistral")
DATA_FORMATS = ("instruction", "chat", "preference")


@dataclass
class DatasetSource:
    """One source of a mixture. Only `id` and `format` are required."""

    id: str = field(metadata={"help": "A local file (json/jsonl/csv/parquet) or a Hub dataset id."})
    format: str = field(metadata={"help": "instruction | chat | preference | kit19/<task name>."})
    split: str = field(default="train", metadata={"help": "Split to read."})
    columns: dict[str, str] = field(
        default_factory=dict,
        metadata={"help": "Map from kotune's field name to your column name, e.g. {output: answer}."},
    )
    weight: float = field(
        default=1.0, metadata={"help": "Share of the final mixture, relative to the other sources' weights."}
    )
    max_samples: int | None = field(default=None, metadata={"help": "Cap on rows taken from this source."})
    streaming: bool = field(
        default=False,
        metadata={"help": "Read the source lazily (large Hub datasets): only max_samples rows (5,000 for kit19/*, "
                          "else all) are fetched."},
    )


@dataclass
class DatasetMixture:
    """Sources plus the seed that makes sampling reproducible."""

    datasets: list[DatasetSource] = field(metadata={"help": "The sources; see DatasetSource."})
    seed: int = field(default=42, metadata={"help": "Seed for sampling and shuffling the mixture."})


@dataclass
class KotuneArguments:
    """kotune's own fields: everything TRL and transformers have no name for."""

    dataset_mixture: DatasetMixture | None = field(
        default=None, metadata={"help": "Training data: {seed, datasets: [{id, format, ...}]}."}
    )
    prompt_format: Literal["auto", "komt", "koquality", "llama2", "mistral"] = field(
        default="auto",
        metadata={"help": "Prompt format (stored as the tokenizer's chat template). auto = the base's default."},
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Allow writing into an existing, non-empty output_dir."}
    )
    overlong: Literal["drop", "truncate"] = field(
        default="drop",
        metadata={"help": "Rows longer than max_length: drop them (counted) or cut the answer (EOS is then lost)."},
    )
    strict: bool = field(default=False, metadata={"help": "Raise on the first bad data row instead of skipping it."})
    max_prompt_length: int | None = field(
        default=None,
        metadata={"help": "DPO: drop (and count) rows whose prompt is longer than this many tokens."},
    )
    data_cache: bool = field(
        default=True, metadata={"help": "Reuse preprocessed data from $KOTUNE_CACHE_DIR (~/.cache/kotune/data)."}
    )
    eval_tasks: list[str] = field(
        default_factory=list,
        metadata={"help": "SFT: after saving, score the model with `kotune eval` on these tasks, e.g. [kit19] or "
                          "[kobest_copa, klue_sts]; results in output_dir/eval. Empty = no evaluation."},
    )
    eval_num_fewshot: int = field(default=0, metadata={"help": "In-context examples per eval question."})
    eval_limit: float | None = field(
        default=None, metadata={"help": "Eval rows per task (or a share < 1): quick checks only."}
    )
    eval_data_dir: str | None = field(
        default=None,
        metadata={"help": "Read eval data from DIR/<task>/{train,validation,test}.jsonl instead of the Hub."},
    )
    eval_baseline: str | None = field(
        default=None, metadata={"help": "Shown beside the eval scores: a model dir, a results.json, or 'base'."}
    )


def _model_config_class():
    from trl import ModelConfig

    @dataclass
    class KotuneModelConfig(ModelConfig):
        """TRL's ModelConfig with QLoRA's double quantization on by default."""

        use_bnb_nested_quant: bool = field(
            default=True, metadata={"help": "Double (nested) quantization of the 4-bit constants; saves ~0.4 bit/param."}
        )
        trust_remote_code: bool = field(default=False, metadata={"help": "Allow custom model code from the model dir."})

    return KotuneModelConfig


def _training_config_class(kind: str):
    if kind == "sft":
        from trl import SFTConfig

        return SFTConfig
    if kind == "dpo":
        from trl import DPOConfig

        return DPOConfig
    raise ValueError(kind)


# Values kotune chooses when the user leaves a field unset (logged by name when applied).
TRAINING_DEFAULTS: dict[str, Any] = {
    "report_to": ["tensorboard"],
    "logging_steps": 10,
    # LoRA and checkpointed blocks use every trainable parameter; the DDP search only costs time and warnings.
    "ddp_find_unused_parameters": False,
}
# Values kotune always sets, because the library default hides a failure.
TRAINING_FORCED: dict[str, Any] = {
    # The default replaces a NaN/inf loss by the running mean in logs; kotune stops the run instead.
    "logging_nan_inf_filter": False,
}
# Keys that older transformers/TRL releases (and most tutorials) use, with what to write now.
RENAMED = {
    "warmup_ratio": "warmup_steps (a float in [0, 1) is a ratio of the total steps)",
    "max_seq_length": "max_length",
    "evaluation_strategy": "eval_strategy",
    "torch_dtype": "dtype",
    "max_prompt_length_chars": "max_prompt_length",
    "bnb_4bit_use_double_quant": "use_bnb_nested_quant",
    "bnb_4bit_compute_dtype": "dtype (the compute dtype of the 4-bit layers)",
    "fraction": "weight",
    "path": "id",
}
# Launcher-added arguments accepted and ignored (the launcher's env vars carry the rank).
LAUNCHER_KEYS = {"local_rank", "local-rank"}


@dataclass
class RunConfig:
    """Everything a run needs, already validated."""

    kotune: KotuneArguments
    model: Any  # KotuneModelConfig
    training: Any  # SFTConfig | DPOConfig
    resolved: dict[str, Any]  # what the user set plus the defaults kotune applied; saved in output_dir
    source: str


# ---------------------------------------------------------------------------------------------------------------
# Reading YAML and the command line
# ---------------------------------------------------------------------------------------------------------------


def parse_overrides(tokens: list[str]) -> dict[str, Any]:
    """`--key=value`, `--key value` and bare `--flag` (true). Values are read as YAML scalars.

    >>> parse_overrides(["--learning_rate=1e-4", "--max_steps", "5", "--use_peft"])
    {'learning_rate': '1e-4', 'max_steps': 5, 'use_peft': True}
    """
    out: dict[str, Any] = {}
    problems = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if not tok.startswith("--") or tok == "--":
            problems.append(f"unexpected argument '{tok}': overrides look like --key=value or --key value")
            i += 1
            continue
        key, eq, value = tok[2:].partition("=")
        if not eq:
            if i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
                value = tokens[i + 1]
                i += 1
            else:
                value = "true"
        i += 1
        out[key] = _yaml_scalar(value)
    if problems:
        raise ConfigError(problems, "command line")
    return out


def _yaml_scalar(text: str) -> Any:
    try:
        return yaml.safe_load(text) if text != "" else ""
    except yaml.YAMLError:
        return text


def _set_dotted(raw: dict, dotted: str, value: Any) -> None:
    """`dataset_mixture.seed=3` sets a nested key; list items are addressed by index."""
    parts = dotted.split(".")
    node: Any = raw
    for part in parts[:-1]:
        key: Any = int(part) if isinstance(node, list) and part.isdigit() else part
        if isinstance(node, dict):
            node = node.setdefault(key, {})
        elif isinstance(node, list) and isinstance(key, int) and key < len(node):
            node = node[key]
        else:
            raise ConfigError([f"override '{dotted}': '{part}' is not a mapping or list index here"], "command line")
    last = parts[-1]
    if isinstance(node, list) and last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value


def read_yaml(path: str) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError([f"config file '{path}' does not exist"], "command line")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError([f"not valid YAML: {err}"], path) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"the top level must be a mapping of key: value, got {type(data).__name__}"], path)
    return data


def load_config(argv: list[str], kind: str = "sft") -> RunConfig:
    """`CONFIG.yaml [--key=value ...]` → a validated RunConfig (raises ConfigError listing every problem)."""
    argv = _drop_launcher_args(argv)
    if not argv or argv[0].startswith("--"):
        raise ConfigError(["give the config file first: train/sft.py CONFIG.yaml [--key=value ...]"], "command line")
    path, rest = argv[0], argv[1:]
    raw = read_yaml(path)
    for key, value in parse_overrides(rest).items():
        if key in LAUNCHER_KEYS:
            continue
        _set_dotted(raw, key, value)
    if raw.get("deepspeed"):
        init_deepspeed_distributed()
    return build_config(raw, kind=kind, source=path)


def _drop_launcher_args(argv: list[str]) -> list[str]:
    """The deepspeed launcher puts `--local_rank=N` first; the rank also arrives in LOCAL_RANK, so drop it."""
    out, skip = [], False
    for i, tok in enumerate(argv):
        if skip:
            skip = False
            continue
        name = tok[2:].split("=", 1)[0] if tok.startswith("--") else None
        if name in LAUNCHER_KEYS:
            skip = "=" not in tok and i + 1 < len(argv) and not argv[i + 1].startswith("--")
            continue
        out.append(tok)
    return out


def init_deepspeed_distributed() -> None:
    """DeepSpeed needs its process group before TrainingArguments reads the world size.

    Without a launcher (plain `python train/sft.py ... --deepspeed ...`) a one-process group is set up, since
    DeepSpeed would otherwise look for MPI. On a machine without CUDA the group uses gloo and DeepSpeed's CPU
    accelerator.
    """
    import socket

    import torch

    cuda = torch.cuda.is_available()
    if not cuda:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    if "RANK" not in os.environ:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        for key, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                           "MASTER_PORT": str(port)}.items():
            os.environ.setdefault(key, value)
    import deepspeed

    deepspeed.init_distributed(dist_backend="nccl" if cuda else "gloo")


# ---------------------------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------------------------


def _fields(cls) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls) if f.init}


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _suggest(key: str, valid: typing.Iterable[str]) -> str:
    near = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.6)
    return f": did you mean '{near[0]}'?" if near else ""


def _type_name(hint: Any) -> str:
    if hint is type(None):
        return "null"
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "")


def coerce(value: Any, hint: Any) -> Any:
    """Return `value` converted to `hint`, or raise TypeError with a readable expectation.

    YAML reads `1e-4` as a string, so numbers in strings are accepted for float/int fields.
    """
    origin = typing.get_origin(hint)
    if hint is Any or hint is typing.Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        # Try exact-type members first so "5" stays a str for `int | str` fields.
        for arg in sorted(args, key=lambda a: 0 if isinstance(a, type) and isinstance(value, a) else 1):
            if arg is type(None):
                continue
            try:
                return coerce(value, arg)
            except TypeError as err:
                errors.append(str(err))
        raise TypeError(" or ".join(_type_name(a) for a in args if a is not type(None)))
    if origin is Literal:
        choices = typing.get_args(hint)
        if value in choices:
            return value
        raise TypeError("one of " + ", ".join(repr(c) for c in choices))
    if origin in (list, typing.List):  # noqa: UP006
        (item,) = typing.get_args(hint) or (Any,)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool) and item is str:
            return [str(value)]
        if not isinstance(value, list):
            raise TypeError(f"a list of {_type_name(item)}")
        return [coerce(v, item) for v in value]
    if origin in (dict, typing.Dict):  # noqa: UP006
        if not isinstance(value, dict):
            raise TypeError("a mapping")
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise TypeError("true or false")
    if hint is int:
        if isinstance(value, bool):
            raise TypeError("an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise TypeError("an integer")
    if hint is float:
        if isinstance(value, bool):
            raise TypeError("a number")
        if isinstance(value, (int, float)):
            return value  # keep ints: e.g. warmup_steps reads an int as steps and a float in [0, 1) as a ratio
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise TypeError("a number")
    if hint is str:
        if isinstance(value, str):
            return value
        raise TypeError("a string")
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        valid = [m.value for m in hint]
        if value in valid or isinstance(value, hint):
            return value
        raise TypeError("one of " + ", ".join(repr(v) for v in valid))
    if dataclasses.is_dataclass(hint):
        if isinstance(value, (dict, hint)):
            return value
        raise TypeError("a mapping")
    return value  # types we do not model (e.g. ParallelismConfig): the library checks them


def _check_fields(values: dict[str, Any], cls, where: str, problems: list[str]) -> dict[str, Any]:
    """Type-check `values` against the fields of `cls`; return the coerced values."""
    hints, fields = _hints(cls), _fields(cls)
    out = {}
    for key, value in values.items():
        try:
            value = coerce(value, hints[key])
        except TypeError as err:
            problems.append(f"{where}{key}: expected {err}, got {value!r} ({type(value).__name__})")
            continue
        choices = fields[key].metadata.get("choices")
        if choices and value is not None and value not in choices:
            problems.append(f"{where}{key}: {value!r} is not one of {', '.join(map(str, choices))}")
            continue
        out[key] = value
    return out


def _build_mixture(raw: Any, problems: list[str]) -> DatasetMixture | None:
    where = "dataset_mixture"
    if raw is None:
        return None
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected a mapping with 'datasets' (and optionally 'seed'), got {raw!r}")
        return None
    valid = _fields(DatasetMixture)
    for key in raw:
        if key not in valid:
            problems.append(f"{where}.{key}: unknown key{_suggest(key, valid)}")
    values = _check_fields({k: v for k, v in raw.items() if k in valid and k != "datasets"}, DatasetMixture,
                           f"{where}.", problems)
    items = raw.get("datasets")
    if not isinstance(items, list) or not items:
        problems.append(f"{where}.datasets: give a non-empty list of sources, e.g. [{{id: data.jsonl, format: instruction}}]")
        return None
    sources = []
    src_fields = _fields(DatasetSource)
    for i, item in enumerate(items):
        here = f"{where}.datasets[{i}]."
        if not isinstance(item, dict):
            problems.append(f"{here[:-1]}: expected a mapping like {{id: ..., format: ...}}, got {item!r}")
            continue
        for key in item:
            if key not in src_fields:
                alias = RENAMED.get(key)
                hint = f": use '{alias}'" if alias else _suggest(key, src_fields)
                problems.append(f"{here}{key}: unknown key{hint}")
        missing = [k for k in ("id", "format") if k not in item]
        for k in missing:
            problems.append(f"{here}{k}: required (every source needs an id and a format)")
        vals = _check_fields({k: v for k, v in item.items() if k in src_fields}, DatasetSource, here, problems)
        fmt = vals.get("format")
        if fmt is not None and fmt not in DATA_FORMATS and not fmt.startswith("kit19/"):
            problems.append(f"{here}format: {fmt!r} is not one of {', '.join(DATA_FORMATS)} or kit19/<task>"
                            f"{_suggest(fmt, DATA_FORMATS)}")
        if "weight" in vals and not vals["weight"] > 0:
            problems.append(f"{here}weight: must be > 0 (it is this source's share of the mixture)")
        if vals.get("max_samples") is not None and vals["max_samples"] < 1:
            problems.append(f"{here}max_samples: must be >= 1 (or leave it out for no cap)")
        cols = vals.get("columns", {})
        if any(not isinstance(k, str) or not isinstance(v, str) for k, v in cols.items()):
            problems.append(f"{here}columns: map kotune field names to your column names, both strings")
        if not missing and len(vals) == len([k for k in item if k in src_fields]):
            sources.append(DatasetSource(**vals))
    if problems:
        return None
    return DatasetMixture(datasets=sources, **values)


def _is_local_path(name: str) -> bool:
    """A Hub id is `name` or `org/name`; anything else (./x, /x, a/b/c) must be on disk."""
    return name.startswith((".", "/", "~")) or name.count("/") >= 2 or Path(name).exists()


def build_config(raw: dict[str, Any], kind: str = "sft", source: str = "config", check_paths: bool = True) -> RunConfig:
    """Split `raw` over the three dataclasses, check every key and type, then cross-check settings.

    `check_paths=False` validates a recipe on a machine that lacks its local model dir (tests of shipped YAML).
    """
    import torch

    model_cls, train_cls = _model_config_class(), _training_config_class(kind)
    groups = {"kotune": _fields(KotuneArguments), "model": _fields(model_cls), "training": _fields(train_cls)}
    valid = set().union(*groups.values())
    problems: list[str] = []
    for key in raw:
        if key in RENAMED and key not in valid:
            problems.append(f"{key}: unknown key: use {RENAMED[key]}")
        elif key not in valid:
            problems.append(f"{key}: unknown key{_suggest(key, valid)}")

    user = {k: v for k, v in raw.items() if k in valid}
    if isinstance(user.get("resume_from_checkpoint"), bool):  # `true` = the last complete checkpoint in output_dir
        user["resume_from_checkpoint"] = "true" if user["resume_from_checkpoint"] else None
    applied = {}
    for key, value in TRAINING_DEFAULTS.items():
        if key not in user and key in groups["training"]:
            user[key] = applied[key] = value
    for key, value in TRAINING_FORCED.items():
        if key in groups["training"]:
            if key in user and user[key] != value:
                logger.warning("%s=%r is overridden to %r by kotune", key, user[key], value)
            user[key] = value
    if not torch.cuda.is_available() and "use_cpu" not in user:
        user["use_cpu"] = applied["use_cpu"] = True  # TRL's bf16 default otherwise fails on a CPU-only machine

    kot_vals = _check_fields({k: v for k, v in user.items() if k in groups["kotune"] and k != "dataset_mixture"},
                             KotuneArguments, "", problems)
    mixture = _build_mixture(user.get("dataset_mixture"), problems)
    model_vals = _check_fields({k: v for k, v in user.items() if k in groups["model"]}, model_cls, "", problems)
    train_vals = _check_fields({k: v for k, v in user.items() if k in groups["training"]}, train_cls, "", problems)

    _cross_check(user, model_vals, train_vals, kind, problems, check_paths)
    if problems:
        raise ConfigError(problems, source)

    try:
        model = model_cls(**model_vals)
    except (ValueError, TypeError) as err:
        raise ConfigError([f"model settings: {err}"], source) from None
    try:
        training = train_cls(**train_vals)
    except (ValueError, TypeError) as err:
        raise ConfigError([f"training settings: {err}"], source) from None
    kotune = KotuneArguments(dataset_mixture=mixture, **kot_vals)
    for key, value in applied.items():
        logger.info("kotune default: %s=%r (set it in your config to change)", key, value)
    resolved = dict(raw)
    resolved.update(applied)
    return RunConfig(kotune=kotune, model=model, training=training, resolved=resolved, source=source)


def _cross_check(user: dict, model: dict, train: dict, kind: str, problems: list[str], check_paths: bool) -> None:
    """Combinations that cannot work, each with the setting that fixes it."""
    if model.get("load_in_4bit") and model.get("load_in_8bit"):
        problems.append("load_in_4bit and load_in_8bit are both true: choose one (4-bit NF4 is QLoRA)")
    if (model.get("load_in_4bit") or model.get("load_in_8bit")) and not model.get("use_peft"):
        problems.append("a quantized base (load_in_4bit/load_in_8bit) cannot be fully fine-tuned: "
                        "set use_peft: true, or drop the quantization for full fine-tuning")
    if not model.get("model_name_or_path"):
        problems.append("model_name_or_path: required (a local model dir or a Hub id)")
    elif check_paths and _is_local_path(model["model_name_or_path"]) and not Path(model["model_name_or_path"]).expanduser().exists():
        problems.append(f"model_name_or_path: '{model['model_name_or_path']}' does not exist")
    if not train.get("output_dir"):
        problems.append("output_dir: required (where the model, checkpoints and logs go)")
    if user.get("dataset_mixture") is None and "dataset_mixture" not in [p.split(":")[0] for p in problems]:
        problems.append("dataset_mixture: required, e.g. {datasets: [{id: data/train.jsonl, format: instruction}]}")
    mixture = user.get("dataset_mixture")
    if check_paths and isinstance(mixture, dict) and isinstance(mixture.get("datasets"), list):
        for i, src in enumerate(mixture["datasets"]):
            sid = src.get("id") if isinstance(src, dict) else None
            looks_local = isinstance(sid, str) and (Path(sid).suffix.lower() in (".json", ".jsonl", ".csv", ".parquet")
                                                    or _is_local_path(sid))
            if looks_local and not Path(sid).expanduser().is_file():
                problems.append(f"dataset_mixture.datasets[{i}].id: file '{sid}' not found")
    if user.get("overwrite_output_dir") and train.get("resume_from_checkpoint"):
        problems.append("overwrite_output_dir and resume_from_checkpoint contradict each other: choose one")
    ds = train.get("deepspeed")
    if ds:
        stage = _deepspeed_stage(ds, problems)
        if stage == 3 and model.get("load_in_8bit"):
            problems.append("load_in_8bit cannot be combined with ZeRO-3: use load_in_4bit with "
                            "bnb_4bit_quant_storage equal to dtype, or ZeRO-2")
        if stage == 3 and model.get("load_in_4bit"):
            dtype = model.get("dtype") or "float32"
            storage = model.get("bnb_4bit_quant_storage")
            if storage is None:
                model["bnb_4bit_quant_storage"] = dtype  # peft#1550: ZeRO-3 shards the 4-bit storage as this dtype
                logger.info("ZeRO-3 + 4-bit: bnb_4bit_quant_storage=%s (the compute dtype)", dtype)
            elif storage != dtype:
                problems.append(f"bnb_4bit_quant_storage ({storage}) must equal dtype ({dtype}) under ZeRO-3 "
                                "(peft#1550); leave it unset and kotune sets it")
    if user.get("eval_tasks"):
        from kotune.evaluate import eval_config_problems

        problems += eval_config_problems(kind, user["eval_tasks"], user.get("eval_data_dir"), check_paths,
                                         user.get("eval_baseline"), bool(model.get("use_peft")))
    if train.get("max_length") is not None and train["max_length"] < 8:
        problems.append("max_length: must be at least 8 tokens")
    if kind == "sft" and user.get("max_prompt_length") is not None:
        problems.append("max_prompt_length: only used by DPO (train/dpo.py); for SFT, max_length bounds the row")
    mpl = user.get("max_prompt_length")
    if kind == "dpo" and isinstance(mpl, int) and train.get("max_length") and mpl >= train["max_length"]:
        problems.append(f"max_prompt_length ({mpl}) must be smaller than max_length ({train['max_length']}), "
                        "or no answer token fits")


def deepspeed_stage(ds: Any) -> int | None:
    """The ZeRO stage of a DeepSpeed config (path or dict), or None without one."""
    return _deepspeed_stage(ds, []) if ds else None


def _deepspeed_stage(ds: Any, problems: list[str]) -> int | None:
    import json

    if isinstance(ds, dict):
        conf = ds
    else:
        p = Path(ds)
        if not p.is_file():
            problems.append(f"deepspeed: config file '{ds}' does not exist")
            return None
        try:
            conf = json.loads(p.read_text())
        except json.JSONDecodeError as err:
            problems.append(f"deepspeed: '{ds}' is not valid JSON ({err})")
            return None
    return (conf.get("zero_optimization") or {}).get("stage")


def field_help(kind: str = "sft") -> list[tuple[str, str]]:
    """(name, help) for every accepted key, for `--help`."""
    out = []
    for cls in (KotuneArguments, _model_config_class(), _training_config_class(kind)):
        for f in dataclasses.fields(cls):
            if f.init:
                out.append((f.name, f.metadata.get("help", "")))
    return out
