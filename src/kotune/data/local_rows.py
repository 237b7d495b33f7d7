"""Rows of a local JSON, JSON Lines, CSV, TSV or plain-text file, read here rather than through `datasets`, so that a
problem names its line and column instead of "An error occurred while generating the dataset".

The bytes are decoded once (`text_files.decode`: encodings, bad bytes). A malformed JSON line, a line that is not
an object, or a CSV line with more fields than the header is an error naming file, line and column under
`strict: true`, else skipped and counted. A JSON document (an array) cannot be read in part: an error in it is
always one error. CSV values are typed as `datasets` types them (pandas, then Arrow).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from pathlib import Path

from kotune.data.text_files import SKIP, RowsRead, decode, in_nfc
from kotune.errors import KotuneError

MALFORMED = "malformed JSON line"
NOT_OBJECT = "JSON line that is not an object"
LONG_CSV = "line with more fields than the header"
BLANK_LINES = re.compile(r"\n(?:[^\S\n]*\n)+")  # a line break, then one or more lines of only spaces


def read_local(path: Path, kind: str, label: str, encoding: str | None, strict: bool, limit: int | None = None,
               ) -> RowsRead:
    """The rows (in NFC), columns and lines skipped by reason of a `kind` ("json", "csv" or "tsv") file."""
    decoded = decode(path.read_bytes(), label, encoding, strict)
    if kind == "json":
        rows, dropped = json_rows(decoded.text, path.suffix.lower() == ".jsonl", label, strict, limit)
        columns = list(dict.fromkeys(k for row in rows for k in row))
    else:
        rows, columns, dropped = csv_rows(decoded.text, "\t" if kind == "tsv" else ",", label, strict, limit)
    return in_nfc(label, rows, columns, decoded.dropped + dropped, decoded.text)


def txt_rows(paths: list[Path], label: str, encoding: str | None, strict: bool, documents: str = "file",
             ) -> RowsRead:
    """Plain .txt files as `{text}` rows (in NFC): each file one document (`documents: file`), or each block of
    lines between blank lines one document (`documents: paragraphs`). Windows line ends (CRLF) are read as \\n.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "wiki.txt"
    >>> _ = path.write_bytes("서울은 수도이다.\\r\\n\\r\\n\\n부산은 항구 도시이다.\\n한강".encode())
    >>> [row["text"] for row in txt_rows([path], "wiki.txt", None, False, "paragraphs").rows]
    ['서울은 수도이다.', '부산은 항구 도시이다.\\n한강']
    """
    rows, dropped, texts = [], Counter(), []
    for path in paths:
        decoded = decode(path.read_bytes(), label if len(paths) == 1 else f"{label}/{path.name}", encoding, strict)
        text = decoded.text.replace("\r\n", "\n")
        dropped += decoded.dropped
        texts.append(text)
        parts = BLANK_LINES.split(text) if documents == "paragraphs" else [text]
        rows += [{"text": part} for part in parts if documents == "file" or part.strip()]
    return in_nfc(label, rows, ["text"], dropped, "\n".join(texts))


def json_rows(text: str, lines_only: bool, label: str, strict: bool, limit: int | None = None,
              ) -> tuple[list[dict], Counter]:
    """Objects of a JSON array (or column dict), or of JSON lines (`.jsonl`, or a .json holding lines)."""
    body = text.lstrip()
    if not lines_only and body[:1] in ("[", "{"):
        try:
            return _document_rows(json.loads(text), label), Counter()
        except json.JSONDecodeError as err:
            if body[:1] == "[" or err.msg != "Extra data":  # "Extra data" after a first object: JSON lines
                raise KotuneError(f"dataset '{label}', line {err.lineno}, column {err.colno}: not valid JSON "
                                  f"({err.msg}); a JSON document cannot be read in part: fix it, or write one "
                                  "object per line (.jsonl)") from None
    rows, dropped = [], Counter()
    for number, line in enumerate(text.split("\n"), start=1):  # not splitlines(): U+2028 may sit inside a string
        stripped = line.strip()
        if not stripped:
            continue
        try:
            row = json.loads(stripped)
        except json.JSONDecodeError as err:
            column, problem, reason = err.colno + len(line) - len(line.lstrip()), err.msg, MALFORMED
        else:
            if isinstance(row, dict):
                rows.append(row)
                if limit is not None and len(rows) >= limit:
                    break
                continue
            column, problem, reason = 1, f"a JSON {type(row).__name__} is not a JSON object ({{...}})", NOT_OBJECT
        if strict:
            raise KotuneError(f"dataset '{label}', line {number}, column {column}: {problem} ({SKIP})")
        dropped[reason] += 1
    return rows, dropped


def _document_rows(doc, label: str) -> list[dict]:
    if isinstance(doc, dict):
        values = list(doc.values())
        if values and all(isinstance(v, list) and len(v) == len(values[0]) for v in values):  # {column: [values]}
            return [dict(zip(doc, row)) for row in zip(*values)]
        return [doc]
    if not isinstance(doc, list):
        raise KotuneError(f"dataset '{label}': a JSON {type(doc).__name__}, not a list of objects")
    for i, row in enumerate(doc):
        if not isinstance(row, dict):
            raise KotuneError(f"dataset '{label}': item {i + 1} of the JSON array is a {type(row).__name__}, not an "
                              "object ({...})")
    return doc


def csv_rows(text: str, delimiter: str, label: str, strict: bool, limit: int | None = None,
             ) -> tuple[list[dict], list[str], Counter]:
    """Rows and header of CSV/TSV text, typed by pandas as `datasets` does (NaN becomes None)."""
    import pandas as pd
    import pyarrow as pa

    dropped = Counter()
    try:
        frame = pd.read_csv(io.StringIO(text), sep=delimiter, nrows=limit)
    except pd.errors.EmptyDataError:
        return [], [], dropped
    except pd.errors.ParserError:
        text, dropped = _without_long_lines(text, delimiter, label, strict)
        frame = pd.read_csv(io.StringIO(text), sep=delimiter, nrows=limit)
    return pa.Table.from_pandas(frame, preserve_index=False).to_pylist(), [str(c) for c in frame.columns], dropped


def _without_long_lines(text: str, delimiter: str, label: str, strict: bool) -> tuple[str, Counter]:
    """The text with each record that has more fields than the header blanked (an error under strict)."""
    lines = text.split("\n")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next(reader, [])
    dropped, start = Counter(), reader.line_num
    for values in reader:
        if len(values) > len(header):
            if strict:
                raise KotuneError(f"dataset '{label}', line {reader.line_num}: {len(values)} fields, the header has "
                                  f"{len(header)} ({', '.join(header)}); quote values that contain "
                                  f"{delimiter!r} ({SKIP})")
            for k in range(start, reader.line_num):
                lines[k] = ""
            dropped[LONG_CSV] += 1
        start = reader.line_num
    return "\n".join(lines), dropped
