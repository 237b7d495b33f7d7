"""Reading the files people download from the corpora's own repos, in their real format.

Those files are TSV with or without a header (`ratings_train.txt`, `paraKQC_v1.txt`), CSV whose header starts with
a BOM (`kor_pair_train.csv`), or JSON lines without an extension (`petitions_2017-08`); `datasets` refuses the
first and last kinds by extension. A route in the KIT-19 registry says which format a file has:

    format: tsv | csv | jsonl
    header: true              # the first line names the columns; or a list of names for a headerless file
    quoting: none             # tsv only: quotes are text (KorNLI, KorSTS sentences may start with '"')

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "ratings_train.txt"
>>> _ = path.write_text("id\\tdocument\\tlabel\\n1\\t재밌다\\t1\\n", encoding="utf-8")
>>> read_raw(path, {"format": "tsv", "header": True})
([{'id': '1', 'document': '재밌다', 'label': '1'}], ['id', 'document', 'label'], Counter())

The bytes are decoded by `text_files.decode` (an `encoding:` on the source, a BOM, CP949 detected and refused
with the key to set); a bad byte or a malformed JSON line names its line and column.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path

from kotune.data.local_rows import json_rows
from kotune.data.text_files import decode
from kotune.errors import KotuneError

csv.field_size_limit(1 << 30)  # court decisions (lbox) and wiki articles exceed csv's 128 KiB default


def read_raw(path: str | Path, spec: dict, label: str | None = None, encoding: str | None = None,
             strict: bool = False) -> tuple[list[dict], list[str], Counter]:
    """(rows as dicts of strings, column names, lines skipped by reason) of one raw file; a clear error naming the
    file otherwise."""
    path = Path(path)
    label = label or str(path)
    fmt = spec.get("format")
    if fmt not in ("tsv", "csv", "jsonl"):
        raise KotuneError(f"dataset '{label}': the registry names no readable format ({fmt!r})")
    decoded = decode(path.read_bytes(), label, encoding, strict)
    if fmt == "jsonl":
        rows, dropped = json_rows(decoded.text, True, label, strict)
        return rows, list(rows[0]) if rows else [], decoded.dropped + dropped
    quoting = csv.QUOTE_NONE if spec.get("quoting") == "none" else csv.QUOTE_MINIMAL
    reader = csv.reader(io.StringIO(decoded.text, newline=""), delimiter="\t" if fmt == "tsv" else ",",
                        quoting=quoting)
    header = spec.get("header", True)
    names = next(reader, []) if header is True else list(header)
    rows = []
    for values in reader:
        if not values:
            continue
        if len(values) < len(names):
            raise KotuneError(f"dataset '{label}', line {reader.line_num}: {len(values)} fields, the file's header "
                              f"has {len(names)} ({', '.join(names)}); is this the file the registry names?")
        rows.append(dict(zip(names, values)))
    return rows, names, decoded.dropped
