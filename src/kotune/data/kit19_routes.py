"""Where a KIT-19 slot's rows come from, read as the source really is: its Hub copy, or a raw file people download.

Each task YAML declares its routes under `source:`:

    hub:   {id, subset, split, split_names, wrong_splits, script_only, labels}
    files: [{match, get, format, header, quoting, columns, labels, types, builder}]

`resolve` picks the route for a source without touching the network (the Hub route is used for the registry's own
Hub id, with the registry's split); `read_task_rows` reads it and turns the rows into the registry's fields: raw
columns renamed, raw label values mapped (strings of any case, 1-based indexes, booleans) to the registry's keys,
numbers typed, every text NFC-normalized and stripped. A value that maps to no label is left as it is, so the
task's check drops the row and names the value: nothing is guessed.
"""

from __future__ import annotations

import fnmatch
import logging
import unicodedata
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

from kotune.config.schema import DatasetSource
from kotune.data.formats import rename_columns
from kotune.data.kit19 import Task, label_form, label_key
from kotune.data.raw_files import read_raw
from kotune.data.text_files import find_local, in_nfc
from kotune.errors import KotuneError

logger = logging.getLogger(__name__)
DATASETS_SUFFIXES = (".json", ".jsonl", ".csv", ".tsv", ".parquet")  # our own (canonical) layout
TYPES = {"int": int, "float": float}


@dataclass(frozen=True)
class Resolved:
    kind: str  # "hub" (the registry's Hub copy), "file" (a raw public file), "canonical" (rows already in our fields)
    route: dict
    split: str | None = None
    subset: str | None = None
    path: Path | None = None  # the raw file on disk (its NFC/NFD name resolved)


def resolve(source: DatasetSource, task: Task) -> Resolved:
    """The route `source` is read by; errors for a script-only Hub id or a split that is not this task's data."""
    hub = task.hub
    path = find_local(source.id)
    if hub.get("id") and source.id == hub["id"] and path is None:
        if hub.get("script_only"):
            raise KotuneError(f"dataset '{source.id}' is a loading script, which datasets 5.x no longer runs. "
                              f"{hub['script_only']}, and point id at the file (format kit19/{task.name} reads it "
                              "as it is)")
        asked = source.split
        if asked in (hub.get("wrong_splits") or {}):
            raise KotuneError(f"dataset '{source.id}', split '{asked}': {hub['wrong_splits'][asked]}; leave split "
                              f"out to read '{hub['split']}' (kit19/{task.name})")
        split = (hub.get("split_names") or {}).get(asked, asked) if asked else hub.get("split", "train")
        if split != (asked or split):
            logger.info("dataset %s: split '%s' is called '%s' there", source.id, asked, split)
        return Resolved("hub", hub, split=split, subset=hub.get("subset"))
    if path is not None:
        route = _file_route(path, task)
        if route is not None:
            return Resolved("file", route, path=path)
        if path.suffix.lower() not in DATASETS_SUFFIXES:
            known = "; ".join(f"{', '.join(r['match'])} ({r['format'].upper()})" for r in task.files) or "none"
            raise KotuneError(f"dataset '{source.id}': kit19/{task.name} does not know this file. Its raw files: "
                              f"{known}; or give rows in the registry's columns ({', '.join(task.fields)}) as "
                              ".json, .jsonl, .csv or .parquet")
    return Resolved("canonical", {}, split=source.split or "train")


def _file_route(path: Path, task: Task) -> dict | None:
    """The raw-file route whose file names match `path`, else one whose header the file's first line has."""
    for route in task.files:
        if any(fnmatch.fnmatch(path.name.lower(), pattern.lower()) for pattern in route["match"]):
            return route
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        first = f.readline().rstrip("\r\n")
    for route in task.files:
        if route.get("header", True) is True and route["format"] in ("tsv", "csv"):
            names = set(first.split("\t" if route["format"] == "tsv" else ","))
            inverse = {ours: raw for raw, ours in (route.get("columns") or {}).items()}
            if {inverse.get(f, f) for f in task.fields} <= names:
                return route
    return None


def normalize(value):
    """Text as templates should see it: NFC (composed Hangul) and without surrounding whitespace."""
    return unicodedata.normalize("NFC", value).strip() if isinstance(value, str) else value


def apply_route(rows: list[dict], route: dict, task: Task) -> list[dict]:
    """Rows in the registry's fields: renamed, text normalized, numbers typed, pairs built, labels mapped."""
    rename = route.get("columns") or {}
    out = []
    for row in rows:
        row = {rename.get(k, k): normalize(v) for k, v in row.items()}
        for name, kind in (route.get("types") or {}).items():
            row[name] = _typed(row.get(name), TYPES[kind])
        out.append(row)
    if route.get("builder"):
        out = BUILDERS[route["builder"]](out)
    if task.label_field:
        labels = {label_form(raw): key for raw, key in (route.get("labels") or {}).items()}
        for row in out:
            raw = row.get(task.label_field)
            key = label_key(labels.get(label_form(raw), raw) if labels else raw, task.label_values)
            if key is not None:  # unmapped: kept as it is, so the task's check drops the row and names the value
                row[task.label_field] = key
    return out


def _typed(value, kind):
    if isinstance(value, str):
        try:
            return kind(value)
        except ValueError:
            return value  # the task's check or template drops it, by reason
    return value


def parakqc_pairs(rows: list[dict]) -> list[dict]:
    """paraKQC's pairs by its authors' rules (mkdata.py), from the 10,000 raw lines in groups of 10 paraphrases.

    Level 4: every pair inside a group. For every two groups i < j, one pair: line j % 10 of group i with line i % 10
    of group j, labelled 3 (same topic and act), 2 (same topic), 1 (same act) or 0 (neither). Deterministic.
    """
    groups = [rows[i:i + 10] for i in range(0, len(rows) - len(rows) % 10, 10)]
    pairs = [{"sentence1": a["sentence"], "sentence2": b["sentence"], "label": 4}
             for group in groups for a, b in combinations(group, 2)]
    for i, j in combinations(range(len(groups)), 2):
        a, b = groups[i][j % 10], groups[j][i % 10]
        topic, act = a["topic"] == b["topic"], a["act"] == b["act"]
        pairs.append({"sentence1": a["sentence"], "sentence2": b["sentence"],
                      "label": 3 if topic and act else 2 if topic else 1 if act else 0})
    return pairs


def stylekqc_pairs(rows: list[dict]) -> list[dict]:
    """StyleKQC's raw act/topic TSVs hold blocks of 10 lines: 5 formal sentences, then the same 5 in informal
    style. Each formal line is paired with its informal line."""
    pairs = []
    for start in range(0, len(rows) - len(rows) % 10, 10):
        block = rows[start:start + 10]
        pairs += [{"formal": f["sentence"], "informal": i["sentence"]} for f, i in zip(block[:5], block[5:])]
    return pairs


BUILDERS = {"parakqc_pairs": parakqc_pairs, "stylekqc_pairs": stylekqc_pairs}


def read_task_rows(source: DatasetSource, task: Task, read_rows, limit: int | None, strict: bool = False):
    """(the rows read, in the registry's fields, and the route used) for a kit19/<task> source.

    `read_rows(source, subset, split, limit, strict)` reads a Hub id or a file in our own layout; raw files are read
    here, in NFC like every source. The user's `columns:` renames apply to what was read, before the route's.
    """
    resolved = resolve(source, task)
    if resolved.kind == "file":
        read = in_nfc(source.id, *read_raw(resolved.path, resolved.route, source.id, source.encoding, strict))
    else:
        read = read_rows(source, resolved.subset, resolved.split, limit, strict)
    rows, columns = rename_columns(source, read.rows, read.columns)
    read.rows = apply_route(rows, resolved.route, task)
    read.columns = list(read.rows[0]) if read.rows else columns
    logger.info("dataset %s: kit19/%s via its %s route%s", source.id, task.name, resolved.kind,
                f" (split {resolved.split})" if resolved.kind == "hub" else "")
    return read, resolved
