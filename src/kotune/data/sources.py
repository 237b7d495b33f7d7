"""Read a source (local file or Hub id), rename columns, and turn rows into conversations.

Local JSON/JSONL/CSV/TSV and plain .txt files (or a dir of .txt files) are read by `local_rows` (encodings, and
every problem named by line and column); Parquet files and Hub ids through `datasets`. All text, column names
included, is NFC-normalized and the changed rows counted. Bad rows and lines are skipped and counted by reason, or
raise with file and row (or line) under `strict: true`: nothing is trained on silently.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from kotune.config.schema import DatasetSource
from kotune.data.formats import CONVERTERS, infer_format, rename_columns, wrong_format
from kotune.data.local_rows import read_local, txt_rows
from kotune.data.text_files import RowsRead, find_local, in_nfc
from kotune.errors import KotuneError
from kotune.data.prompt_formats import join_instruction

logger = logging.getLogger(__name__)

FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet",
                 ".txt": "txt"}


def as_is(record, key: str, epoch: int):
    """An instruction or chat record is its own conversation."""
    return record


@dataclass
class SourceRows:
    """Usable records of one source, with what was dropped and why.

    `to_messages(record, key, epoch)` turns a record into a conversation; for KIT-19 tasks the template depends on
    the example's key and the epoch, for instruction and chat records it is the record itself.
    """

    source: DatasetSource
    records: list
    available: int
    dropped: Counter = field(default_factory=Counter)
    to_messages: Callable = field(default=as_is)
    templated: bool = False
    requested: int = 0  # rows the mixture drew from this source (its weight × its rows, or its share)
    answer_of: Callable = field(default=lambda record: None)  # a labelled task's answer, for the label report
    normalized: int = 0  # rows whose text (or column names) changed under NFC


def read_rows(source: DatasetSource, subset: str | None = None, split: str | None = None, limit: int | None = None,
              strict: bool = False) -> RowsRead:
    """The rows of a .json/.jsonl/.csv/.tsv/.parquet file or a Hub id, in NFC.

    With `streaming: true` only the first `limit` rows are read (a large Hub dataset is never downloaded whole).
    """
    path, builder = local_file(source)
    if source.documents != "file" and builder != "txt":
        raise KotuneError(f"dataset '{source.id}': documents: {source.documents} splits plain .txt files into "
                          "documents; the rows of this source are documents already: remove documents")
    if builder == "txt":
        files = sorted(path.rglob("*.txt")) if path.is_dir() else [path]
        return txt_rows(files, source.id, source.encoding, strict, source.documents)
    if builder in ("json", "csv", "tsv"):
        return read_local(path, builder, source.id, source.encoding, strict, limit if source.streaming else None)
    if source.encoding:
        raise KotuneError(f"dataset '{source.id}': encoding applies to text files (CSV, TSV, JSON, JSON lines); "
                          f"{'Parquet files' if path else 'Hub datasets'} carry their own: remove encoding")
    table = _open(source, path, subset or source.config, split or source.split or "train")
    if source.streaming:
        rows = []
        for row in table:
            rows.append(row)
            if limit is not None and len(rows) >= limit:
                break
        return in_nfc(source.id, rows, list(rows[0]) if rows else [])
    return in_nfc(source.id, table.to_list(), table.column_names)


def local_file(source: DatasetSource) -> tuple[Path | None, str | None]:
    """(the local file a source names, its reader) or (None, None) for a Hub id; an NFC/NFD mismatch between the
    name given and the name on disk is resolved. A local dir is a dataset saved one file per split:
    `<dir>/<split>.jsonl` (or .json/.csv/.tsv/.parquet/.txt), or else a corpus of .txt files (the dir itself)."""
    path = Path(source.id).expanduser()
    builder = FILE_BUILDERS.get(path.suffix.lower())
    if builder is None and path.is_dir():
        return split_file(source, path)
    found = find_local(source.id)
    if builder or found or source.id.startswith((".", "/", "~")):
        if found is None:
            raise KotuneError(f"dataset '{source.id}': file not found")
        if builder is None:
            raise KotuneError(f"dataset '{source.id}': unknown file type; use .json, .jsonl, .csv, .tsv, .parquet "
                              "or .txt (raw files of the KIT-19 sources are read as they are with format: "
                              "kit19/<task>)")
        return found, builder
    return None, None


def source_path(source: DatasetSource) -> Path | None:
    """The file on disk a source reads (a raw KIT-19 file, or a split's file in a dataset dir), or None for a Hub id:
    for comparing sources and fingerprinting their content."""
    folder = Path(source.id).expanduser()
    if folder.is_dir() and not FILE_BUILDERS.get(folder.suffix.lower()):
        try:
            return split_file(source, folder)[0]
        except KotuneError:
            return None
    return find_local(source.id)


def split_file(source: DatasetSource, folder: Path) -> tuple[Path, str]:
    """The file of the source's split (default train) in a local dataset dir, or (the dir, "txt") for a dir of .txt
    documents."""
    split = source.split or "train"
    for suffix, builder in FILE_BUILDERS.items():
        if (folder / f"{split}{suffix}").is_file():
            return folder / f"{split}{suffix}", builder
    if next(folder.rglob("*.txt"), None) is not None:
        return folder, "txt"  # a corpus: every .txt file below it, in name order
    present = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in FILE_BUILDERS)
    raise KotuneError(f"dataset '{source.id}': a local dir is read one file per split, and it has no {split}.jsonl "
                      f"(or .json/.csv/.tsv/.parquet) for split '{split}', nor .txt files; its files: "
                      f"{present or 'none'}")


def _open(source: DatasetSource, path: Path | None, subset: str | None, split: str):
    import datasets

    if path is not None:
        try:
            return datasets.load_dataset("parquet", data_files=str(path), split="train", streaming=source.streaming)
        except Exception as err:  # datasets wraps parse errors in many types
            raise KotuneError(f"dataset '{source.id}': cannot be read as Parquet: {_first_line(err)}") from None
    try:
        return datasets.load_dataset(source.id, subset, split=split, streaming=source.streaming)
    except Exception as err:
        raise KotuneError(f"dataset '{source.id}': not a local file and not loadable from the Hub "
                          f"({_first_line(err)})") from None


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def load_source(source: DatasetSource, strict: bool = False, seed: int = 42, formats: tuple[str, ...] = ()
                ) -> SourceRows:
    """Records of one source; bad rows counted by reason (or raised, with `strict`). A source without a format gets
    the first of the stage's `formats` whose columns the data has (logged)."""
    task = None
    if source.format is not None and source.format.startswith("kit19/"):
        from kotune.data.kit19 import DEFAULT_CAP, load_task
        from kotune.data.kit19_routes import read_task_rows

        task = load_task(source.format.split("/", 1)[1])
        read, _ = read_task_rows(source, task, read_rows, limit=source.max_samples or DEFAULT_CAP, strict=strict)
        table, columns = read.rows, read.columns
        absent = [f for f in task.fields if f not in columns]
        if absent:
            raise KotuneError(f"dataset '{source.id}': KIT-19 task '{task.name}' needs columns {absent}; the file "
                              f"has {columns} (map yours with columns: {{{absent[0]}: your_column}})")
    elif source.format is None or source.format in CONVERTERS:
        read = read_rows(source, limit=source.max_samples, strict=strict)
        table, columns = rename_columns(source, read.rows, read.columns)
        if source.format is None:
            source = replace(source, format=inferred_format(source, columns, formats))
        problem = wrong_format(source.format, columns)
        if problem:
            raise KotuneError(f"dataset '{source.id}': {problem}")
    else:
        raise KotuneError(f"dataset '{source.id}': format '{source.format}' is not supported by this stage")
    result = SourceRows(source=source, records=[], available=len(table) + sum(read.dropped.values()),
                        dropped=Counter(read.dropped), normalized=read.normalized)
    if task is not None:
        result.templated = True
        result.to_messages = Kit19Renderer(source.format.split("/", 1)[1], seed)
        result.answer_of = task.answer
    for index, row in enumerate(table):
        if task is not None:
            record, reason = row, task.check(row)
        else:
            record, reason = CONVERTERS[source.format](row)
        if reason:
            if strict:
                raise KotuneError(f"dataset '{source.id}', row {index + 1}: {reason} (strict: true; "
                                  f"fix the row or set strict: false to skip bad rows)")
            result.dropped[reason] += 1
            continue
        result.records.append(record)
    if result.dropped:
        logger.warning("dataset %s: skipped %d bad rows: %s", source.id, sum(result.dropped.values()),
                       dict(result.dropped))
    return result


def inferred_format(source: DatasetSource, columns: list[str], formats: tuple[str, ...]) -> str:
    """The format of a source given without one, from its columns and what the stage reads; logged."""
    fmt = infer_format(columns, formats)
    if fmt is None:
        readable = [f for f in formats if not f.startswith("kit19")] or list(CONVERTERS)
        raise KotuneError(f"dataset '{source.id}': no format given, and its columns {columns} fit none this stage "
                          f"reads ({', '.join(readable)}): set format, or map your columns with columns: {{...}}")
    logger.info("dataset %s: format %s, inferred from its columns %s (set format to choose another)", source.id,
                fmt, columns)
    return fmt


class Kit19Renderer:
    """A KIT-19 row → a conversation with the template drawn for (seed, task, key, epoch). Pickles as its task's name
    and seed (the compiled templates are reloaded from the registry), so tokenizing workers can receive it."""

    def __init__(self, task_name: str, seed: int):
        self.task_name, self.seed = task_name, seed

    def __getstate__(self):
        return {"task_name": self.task_name, "seed": self.seed}

    def __call__(self, row: dict, key: str, epoch: int) -> list[dict]:
        from kotune.data.kit19 import load_task, template_index

        task = load_task(self.task_name)
        instruction, input_text, output = task.render(row, template_index(self.seed, task.name, key, epoch,
                                                                          len(task.templates)))
        return [{"role": "user", "content": join_instruction(instruction, input_text)},
                {"role": "assistant", "content": output.strip()}]
