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
([{'id': '1', 'document': '재밌다', 'label': '1'}], ['id', 'document', 'label'])
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from kotune.errors import KotuneError

csv.field_size_limit(1 << 30)  # court decisions (lbox) and wiki articles exceed csv's 128 KiB default


def read_raw(path: str | Path, spec: dict) -> tuple[list[dict], list[str]]:
    """(rows as dicts of strings, column names) of one raw file; a clear error naming the file otherwise."""
    path = Path(path)
    fmt = spec.get("format")
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:  # utf-8-sig: drops a BOM if there is one
            if fmt == "jsonl":
                rows = [json.loads(line) for line in f if line.strip()]
                return rows, list(rows[0]) if rows else []
            if fmt not in ("tsv", "csv"):
                raise KotuneError(f"dataset '{path}': the registry names no readable format ({fmt!r})")
            quoting = csv.QUOTE_NONE if spec.get("quoting") == "none" else csv.QUOTE_MINIMAL
            reader = csv.reader(f, delimiter="\t" if fmt == "tsv" else ",", quoting=quoting)
            header = spec.get("header", True)
            names = next(reader, []) if header is True else list(header)
            rows = []
            for line, values in enumerate(reader, start=2 if header is True else 1):
                if not values:
                    continue
                if len(values) < len(names):
                    raise KotuneError(f"dataset '{path}', line {line}: {len(values)} fields, the file's header has "
                                      f"{len(names)} ({', '.join(names)}); is this the file the registry names?")
                rows.append(dict(zip(names, values)))
            return rows, names
    except UnicodeDecodeError as err:
        raise KotuneError(f"dataset '{path}': not UTF-8 text ({err.reason} at byte {err.start})") from None
    except json.JSONDecodeError as err:
        raise KotuneError(f"dataset '{path}': not JSON lines (line {err.lineno}: {err.msg})") from None
