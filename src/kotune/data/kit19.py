"""The KIT-19 task registry: one YAML per task slot turns a raw row of its source dataset into an instruction.

Templates are data (src/kotune/data/kit19/*.yaml), written in Korean, rendered with Jinja2 over the raw row's
own column names plus `label_text`. The template of an example is drawn from (seed, task, example key, epoch),
so a later epoch sees other phrasings while the same seed reproduces the same run.
"""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import yaml

from kotune.errors import KotuneError

TASK_DIR = Path(str(resources.files("kotune") / "data" / "kit19"))
DEFAULT_CAP = 5000  # KIT-19 takes about 5,000 examples per task
PART = "\x00\x1f"  # joins a phrasing's three parts into one template: one Jinja render per row, not three (1.5x)


@dataclass(frozen=True)
class Task:
    name: str
    category: str
    source: dict  # licence (Hub id), note, and the routes: `hub` (its Hub copy) and `files` (raw files people download)
    fields: tuple[str, ...]
    label_field: str | None
    label_values: dict
    templates: tuple  # one compiled Jinja template per phrasing: instruction, input and output joined by PART

    @property
    def hub(self) -> dict:
        """How to read the Hub copy: {id, subset, split, split_names, wrong_splits, script_only, labels, ...}."""
        return self.source.get("hub") or {}

    @property
    def license(self) -> str | None:
        """The source's licence as a Hub licence id (cc-by-sa-4.0, ...), or None where the registry does not know it."""
        return self.source.get("license")

    @property
    def files(self) -> list[dict]:
        """The raw public files: [{match, get, format, header, quoting, columns, labels, types, builder}]."""
        return list(self.source.get("files") or [])

    def answer(self, row: dict) -> str | None:
        """The label text a row of a labelled task answers with (for the label report), else None."""
        if self.label_field is None:
            return None
        return self.label_values.get(row.get(self.label_field))

    def check(self, row: dict) -> str | None:
        """Why this raw row cannot be used, or None."""
        for name in self.fields:
            value = row.get(name)
            if value is None:
                return f"missing {name}"
            if isinstance(value, str) and not value.strip():
                return f"empty {name}"
            if isinstance(value, str) and "\ufffd" in value:
                return f"{name} has undecodable bytes"
        if self.label_field is not None and label_key(row[self.label_field], self.label_values) is None:
            return f"{self.label_field} value {row[self.label_field]!r} is not one of {list(self.label_values)}"
        return None

    def render(self, row: dict, index: int) -> tuple[str, str, str]:
        """(instruction, input, output) of template `index` for a row that passed `check`."""
        variables = dict(row)
        if self.label_field is not None:
            variables["label_text"] = self.label_values[label_key(row[self.label_field], self.label_values)]
        instruction, input_text, output = self.templates[index % len(self.templates)].render(**variables).split(PART)
        return instruction, input_text, output


def label_form(value) -> str:
    """A label value as compared across sources: booleans, ints and strings of any case meet (TRUE = True = true,
    1 = "1" = 1.0)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip().casefold()


def label_key(value, values: dict):
    """The registry's label key for a value, or None when it matches none (never guessed)."""
    if value in values and not isinstance(value, bool):
        return value
    form = label_form(value)
    for key in values:  # YAML keys are ints where the source's labels are ints; CSV gives "1"
        if label_form(key) == form:
            return key
    return None


def template_index(seed: int, task: str, key: str, epoch: int, n: int) -> int:
    """Stable across processes and Python versions (no `hash()`), different per epoch."""
    digest = hashlib.blake2b(f"{seed}|{task}|{key}|{epoch}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % n


def _one_part(source: str) -> str:
    """A part's source as Jinja would read it alone: without its single trailing newline (keep_trailing_newline)."""
    if PART in source:
        raise KotuneError(f"a KIT-19 template contains the reserved separator {PART!r}")
    return source[:-1] if source.endswith("\n") else source


def task_names() -> list[str]:
    return sorted(p.stem for p in TASK_DIR.glob("*.yaml"))


@lru_cache(maxsize=None)
def load_task(name: str) -> Task:
    path = TASK_DIR / f"{name}.yaml"
    if not path.is_file():
        near = difflib.get_close_matches(name, task_names(), n=1)
        hint = f"; did you mean 'kit19/{near[0]}'?" if near else f"; tasks: {', '.join(task_names())}"
        raise KotuneError(f"unknown KIT-19 task '{name}'{hint}")
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    from jinja2 import Environment, StrictUndefined

    env = Environment(undefined=StrictUndefined, keep_trailing_newline=False)
    parts = ("instruction", "input", "output")
    templates = tuple(env.from_string(PART.join(_one_part(t.get(part) or "") for part in parts))
                      for t in spec["templates"])
    labels = spec.get("labels") or {}
    return Task(name=spec["name"], category=spec["category"], source=spec["source"], fields=tuple(spec["fields"]),
                label_field=labels.get("field"), label_values=dict(labels.get("values") or {}), templates=templates)
