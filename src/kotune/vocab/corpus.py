"""Korean text for `kotune vocab`: the corpus new tokens are learned from, and held-out text they are measured on.

A `.txt` file gives one text per line; a `.jsonl`/`.json` file gives each record's `text` (the pt stage's column),
or, for records without one (instruction, chat or preference rows), every string in the record. Files are read as
kotune reads data (`kotune.data.text_files.decode`: UTF-8, a BOM, or a clear refusal) and every text is NFC, so
decomposed Hangul from macOS counts as the syllables it shows.

>>> record_texts({"instruction": "수도는?", "output": "서울", "messages": [{"role": "user", "content": "안녕"}]})
['수도는?', '서울', '안녕']
>>> record_texts({"text": "서울은 수도이다.", "source": "wiki"})
['서울은 수도이다.']
"""

from __future__ import annotations

import json
from pathlib import Path

from kotune.data.text_files import decode, find_local, nfc
from kotune.errors import KotuneError

SUFFIXES = (".txt", ".jsonl", ".json")


def record_texts(record) -> list[str]:
    """The text of one JSON record: its `text` field, else every string in it (depth first; chat roles aside)."""
    if isinstance(record, dict) and isinstance(record.get("text"), str):
        return [record["text"]]
    if isinstance(record, str):
        return [record]
    values = ([v for k, v in record.items() if k != "role"] if isinstance(record, dict)
              else record if isinstance(record, list) else [])
    return [text for value in values for text in record_texts(value)]


def read_texts(paths: list[str], what: str = "--corpus") -> list[str]:
    """Every non-empty text of the files, NFC, in file order; a missing or unreadable file is reported with all the
    others at once."""
    problems, texts = [], []
    for name in paths:
        path = find_local(name)
        if path is None:
            problems.append(f"{what} '{name}' does not exist")
            continue
        if path.suffix.lower() not in SUFFIXES:
            problems.append(f"{what} '{name}': give .txt (a text per line) or .jsonl/.json (a `text` field, or "
                            "every string of each record)")
            continue
        text = decode(path.read_bytes(), str(path), None, strict=False).text
        try:
            texts += file_texts(path, text)
        except json.JSONDecodeError as err:
            problems.append(f"{what} '{name}', line {err.lineno}: not JSON ({err.msg})")
    if problems:
        raise KotuneError("; ".join(problems))
    texts = [nfc(t) for t in texts if t.strip()]
    if not texts:
        raise KotuneError(f"{what} {' '.join(paths)}: no text in these files")
    return texts


def file_texts(path: Path, text: str) -> list[str]:
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return text.splitlines()
    if suffix == ".jsonl":
        return [t for line in text.splitlines() if line.strip() for t in record_texts(json.loads(line))]
    return record_texts(json.loads(text))
