"""The config side of the studio: the form's fields from kotune's own schema, the check the CLI runs (same messages),
the YAML and the launch command. Nothing here imports torch: the page validates on every keystroke."""

from __future__ import annotations

import shlex
from typing import Any

import yaml

from kotune.config.loading import load_unique_yaml
from kotune.config.recipes import translate
from kotune.config.validation import check_config, field_groups
from kotune.errors import ConfigError
from kotune.stages.registry import STAGES, get_stage
from kotune.studio.paths import Workspace

# The form's own sections, in order; every other accepted key is reachable under "advanced" (`schema`).
COMMON = {
    "model": ["model_name_or_path", "dtype", "prompt_format", "thinking"],
    "method": ["use_peft", "load_in_4bit", "load_in_8bit", "lora_r", "lora_alpha", "lora_dropout"],
    "training": ["output_dir", "learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size",
                 "gradient_accumulation_steps", "max_length", "lr_scheduler_type", "warmup_steps", "logging_steps",
                 "eval_split_size", "save_strategy", "bf16", "gradient_checkpointing", "seed", "report_to"],
}
METHODS = {"qlora": {"use_peft": True, "load_in_4bit": True}, "lora": {"use_peft": True}, "full": {"use_peft": False}}


def _plain(type_spec: Any) -> str:
    """The form widget for a field type: bool, int, float, choice, list or text."""
    if isinstance(type_spec, str):
        return {"bool": "bool", "int": "int", "float": "float"}.get(type_spec, "text")
    if isinstance(type_spec, dict):
        if "literal" in type_spec or "enum" in type_spec:
            return "choice"
        if "list" in type_spec or "dict" in type_spec:
            return "yaml"
        kinds = [_plain(t) for t in type_spec.get("union", []) if t != "null"]
        if "yaml" in kinds:
            return "yaml"
        return kinds[0] if kinds else "text"
    return "text"


def _choices(spec: dict) -> list:
    found = spec.get("choices") or []
    stack = [spec.get("type")]
    while stack and not found:
        node = stack.pop()
        if isinstance(node, dict):
            found = list(node.get("literal") or node.get("enum") or [])
            stack += node.get("union", [])
    return [c for c in found if c is not None]


def schema(stage: str) -> dict:
    """Every key the stage accepts, with its help, widget and choices; which ones the form shows up front."""
    if stage not in STAGES:
        raise ConfigError([f"stage: '{stage}' is not one of {', '.join(STAGES)}"], "studio")
    fields = {}
    for group, specs in field_groups(stage).items():
        for name, spec in specs.items():
            if name in fields or name == "dataset_mixture":
                continue
            fields[name] = {"group": group, "help": (spec.get("help") or "").strip(), "widget": _plain(spec["type"]),
                            "choices": _choices(spec)}
            if fields[name]["choices"] and fields[name]["widget"] != "yaml":
                fields[name]["widget"] = "choice"
    common = {section: [k for k in keys if k in fields] for section, keys in COMMON.items()}
    return {"stage": stage, "stages": list(STAGES), "formats": list(get_stage(stage).data_formats),
            "common": common, "fields": fields, "methods": list(METHODS)}


def problems_of(raw: dict, stage: str) -> list[str]:
    """The problems `kotune STAGE CONFIG` reports before it loads torch, in the same words and order
    (`validation.build_config`'s first half)."""
    translation = translate(raw, stage, set().union(*field_groups(stage).values()))
    *_, problems = check_config(translation.raw, stage)
    return translation.problems + problems


def check(raw: Any, stage: str, source: str, workspace: Workspace) -> dict:
    """{ok, problems, message (the CLI's error text), studio (paths refused by the studio), yaml, commands}."""
    if not isinstance(raw, dict):
        problems = [f"the top level must be a mapping of key: value, got {type(raw).__name__}"]
    elif stage not in STAGES:
        problems = [f"stage: '{stage}' is not one of {', '.join(STAGES)}"]
    else:
        problems = problems_of(raw, stage)
    refused = workspace.config_path_problems(raw) if isinstance(raw, dict) else []
    message = f"kotune: error: {ConfigError(problems, source)}" if problems else ""
    return {"ok": not problems and not refused, "problems": problems, "message": message, "studio": refused,
            "yaml": to_yaml(raw) if isinstance(raw, dict) else "", "commands": launch_commands(stage, source)}


def to_yaml(raw: dict) -> str:
    """The YAML the run reads: keys in the form's order, Korean as written."""
    return yaml.safe_dump(raw, allow_unicode=True, sort_keys=False, default_flow_style=False)


def parse_yaml(text: str, source: str) -> dict:
    """A YAML text from the page, read as the CLI reads a config file (duplicate keys refused)."""
    try:
        data = load_unique_yaml(text, source)
    except yaml.YAMLError as err:
        raise ConfigError([f"not valid YAML: {err}"], source) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"the top level must be a mapping of key: value, got {type(data).__name__}"], source)
    return data


def launch_commands(stage: str, config: str) -> dict[str, str]:
    """The commands that run this config, exactly as a terminal takes them."""
    script = get_stage(stage).entry_script if stage in STAGES else f"train/{stage}.py"
    quoted = shlex.quote(config)
    return {"kotune": f"kotune {stage} {quoted}", "python": f"python {script} {quoted}",
            "launch": f"./launch.sh {stage} {quoted}"}


def run_argv(python: str, stage: str, config: str) -> list[str]:
    """The argv the studio starts: `kotune STAGE CONFIG` (the same runner as train/STAGE.py), as a list, never a
    shell line."""
    return [python, "-m", "kotune.cli", stage, config]
