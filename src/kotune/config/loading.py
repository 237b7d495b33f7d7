"""Reading a config: the YAML file, then `--key=value` overrides on top. No side effects: no process group, no
network; distributed set-up belongs to the start of a run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kotune.config.schema import LAUNCHER_KEYS, RunConfig
from kotune.config.validation import build_config
from kotune.errors import ConfigError


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


def set_dotted(raw: dict, dotted: str, value: Any) -> None:
    """`dataset_mixture.seed=3` sets a nested key; list items are addressed by index.

    >>> raw = {"dataset_mixture": {"datasets": [{"id": "a.jsonl"}]}}
    >>> set_dotted(raw, "dataset_mixture.datasets.0.id", "b.jsonl"); raw["dataset_mixture"]["datasets"][0]["id"]
    'b.jsonl'
    """
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


class UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that records a key given twice in one mapping: PyYAML keeps the last silently, so a config with
    two `datasets:` keys would train on the second list only."""

    def __init__(self, stream):
        super().__init__(stream)
        self.duplicates: list[tuple[int, str]] = []

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<:` merges are meant to be overridden
                line = key_node.start_mark.line + 1
                if key_node.value in seen:
                    self.duplicates.append((line, f"{key_node.value}: given twice (lines {seen[key_node.value]} and "
                                                  f"{line}); YAML keeps only the last, so delete or merge one"))
                else:
                    seen[key_node.value] = line
        return super().construct_mapping(node, deep)


def load_unique_yaml(text: str, source: str) -> Any:
    """yaml.safe_load that refuses duplicate keys (every one, with both line numbers) in one ConfigError."""
    loader = UniqueKeyLoader(text)
    try:
        data = loader.get_single_data()
    finally:
        loader.dispose()
    if loader.duplicates:
        raise ConfigError([problem for _, problem in sorted(loader.duplicates)], source)
    return data


def read_yaml(path: str) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError([f"config file '{path}' does not exist"], "command line")
    try:
        data = load_unique_yaml(p.read_text(encoding="utf-8"), path)
    except yaml.YAMLError as err:
        raise ConfigError([f"not valid YAML: {err}"], path) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"the top level must be a mapping of key: value, got {type(data).__name__}"], path)
    return data


def read_config(argv: list[str]) -> tuple[str, dict[str, Any]]:
    """`CONFIG.yaml [--key=value ...]` → (path, the raw mapping with the overrides applied)."""
    argv = drop_launcher_args(argv)
    if not argv or argv[0].startswith("--"):
        raise ConfigError(["give the config file first: train/sft.py CONFIG.yaml [--key=value ...]"], "command line")
    path, rest = argv[0], argv[1:]
    raw = read_yaml(path)
    for key, value in parse_overrides(rest).items():
        if key not in LAUNCHER_KEYS:
            set_dotted(raw, key, value)
    return path, raw


def load_config(argv: list[str], stage: str = "sft") -> RunConfig:
    """`CONFIG.yaml [--key=value ...]` → a validated RunConfig (raises ConfigError listing every problem)."""
    path, raw = read_config(argv)
    return build_config(raw, stage=stage, source=path)


def drop_launcher_args(argv: list[str]) -> list[str]:
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
