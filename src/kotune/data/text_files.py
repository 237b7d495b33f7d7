"""Local text files as Korean users save them: CP949/EUC-KR from Excel, UTF-16 from Windows tools, decomposed Hangul
(NFD) from macOS, in file names, headers and text. A leaf (no kotune imports but errors), so the config check can
find files too.

`decode` turns a file's bytes into text. UTF-8 is the fast path: one `bytes.decode`. Otherwise a byte order mark
decides (UTF-16/UTF-32 with a BOM are read, and logged), or an explicit `encoding:`; a file that is not UTF-8 and
has no `encoding:` is refused with the encoding to set. A line with bytes the encoding cannot read is an error naming
its line and column under `strict: true`, else it is blanked (line numbers stay true) and counted.

>>> decode("가\\n".encode("cp949"), "a.csv", "cp949", False).text
'가\\n'
>>> nfc_rows([{"\\u1100\\u1161": "\\u1100\\u1161"}, {"a": "가"}])
([{'가': '가'}, {'a': '가'}], 1)
"""

from __future__ import annotations

import codecs
import logging
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from kotune.errors import KotuneError

logger = logging.getLogger(__name__)

BOMS = ((codecs.BOM_UTF32_LE, "utf-32-le", "UTF-32"), (codecs.BOM_UTF32_BE, "utf-32-be", "UTF-32"),
        (codecs.BOM_UTF8, "utf-8", "UTF-8"), (codecs.BOM_UTF16_LE, "utf-16-le", "UTF-16"),
        (codecs.BOM_UTF16_BE, "utf-16-be", "UTF-16"))  # UTF-32 LE starts with UTF-16 LE's BOM: test it first
# EUC-KR files from Korean Windows are CP949 (its superset, with all 11,172 syllables): read both as CP949.
ALIASES = {"euc_kr": "cp949", "ks_c_5601_1987": "cp949"}
NOT_UTF8 = "bytes that are not UTF-8"
SKIP = "strict: true; fix the line, or set strict: false to skip such lines"


@dataclass
class Decoded:
    """A file's text; lines that could not be decoded are blank in it and counted in `dropped`."""

    text: str
    encoding: str
    dropped: Counter = field(default_factory=Counter)


def find_local(name: str) -> Path | None:
    """The file `name` names, also when its NFC/NFD form differs from the name on disk (macOS writes NFD names;
    the same name typed elsewhere is NFC); None if there is none."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    for form in ("NFC", "NFD"):
        other = Path(unicodedata.normalize(form, str(path)))
        if other.is_file():
            return other
    found = Path(path.anchor or ".")
    for part in path.parts[1:] if path.anchor else path.parts:
        want = unicodedata.normalize("NFC", part)
        if (found / part).exists():
            found = found / part
            continue
        try:
            match = [p for p in found.iterdir() if unicodedata.normalize("NFC", p.name) == want]
        except OSError:
            return None
        if not match:
            return None
        found = match[0]
    return found if found.is_file() else None


def codec_name(encoding: str, label: str) -> str:
    """Python's codec for an `encoding:` value (EUC-KR is read as CP949); a clear error for an unknown one."""
    try:
        name = codecs.lookup(encoding).name.replace("-", "_")
    except LookupError:
        raise KotuneError(f"dataset '{label}': encoding {encoding!r} is not an encoding Python knows; Korean files "
                          "are usually cp949 (EUC-KR, as Korean Windows and Excel save them), utf-16 or utf-8"
                          ) from None
    return ALIASES.get(name, name).replace("_", "-")


def decode(data: bytes, label: str, encoding: str | None, strict: bool) -> Decoded:
    """The text of a file's bytes (see the module doc); `label` names the file in errors."""
    for bom, bom_codec, family in BOMS:
        if data.startswith(bom):
            if encoding is None or codec_name(encoding, label).startswith(family.lower()):
                if family != "UTF-8":
                    logger.warning("dataset %s: read as %s (BOM)", label, family)
                return _decode(data[len(bom):], label, bom_codec, strict, explicit=True)
    if encoding is not None:
        return _decode(data, label, codec_name(encoding, label), strict, explicit=True)
    return _decode(data, label, "utf-8", strict, explicit=False)


def _decode(data: bytes, label: str, codec: str, strict: bool, explicit: bool) -> Decoded:
    try:
        text = data.decode(codec)
    except UnicodeDecodeError as err:
        first = err
    else:
        if not explicit and "\x00" in text:
            raise KotuneError(f"dataset '{label}': this file looks like UTF-16 without a byte order mark: set "
                              f"encoding: {_utf16_order(data)} on this source")
        return Decoded(text, codec)
    if not explicit:
        _refuse_other_encoding(data, label)
    elif _decodes(data, "utf-8"):
        raise KotuneError(f"dataset '{label}': this file is UTF-8 text, not {codec}: remove encoding: {codec} from "
                          "this source")
    if codec.startswith(("utf-16", "utf-32")):  # no line-by-line recovery in a wide encoding
        line = data[:first.start].decode(codec, errors="replace").count("\n") + 1
        raise KotuneError(f"dataset '{label}', line {line}: bytes that are not {codec} ({first.reason}); the file "
                          "is damaged")
    return _by_line(data, label, codec, strict)


def _by_line(data: bytes, label: str, codec: str, strict: bool) -> Decoded:
    """Decode line by line; a bad line is an error naming line and column, or blanked and counted."""
    lines = data.split(b"\n")
    out, dropped = [], Counter()
    reason = NOT_UTF8 if codec == "utf-8" else f"bytes that are not {codec}"
    for number, raw in enumerate(lines, start=1):
        try:
            out.append(raw.decode(codec))
            continue
        except UnicodeDecodeError as err:
            if strict:
                column = len(raw[:err.start].decode(codec, errors="replace")) + 1
                bad = raw[err.start:err.start + 4]
                hint = "; this line looks like CP949/EUC-KR" if codec == "utf-8" and _decodes(raw, "cp949") else ""
                raise KotuneError(f"dataset '{label}', line {number}, column {column}: {reason} ({bad!r}{hint}) "
                                  f"({SKIP})") from None
        out.append("")
        dropped[reason] += 1
    logger.warning("dataset %s: skipped %d lines with %s", label, sum(dropped.values()), reason)
    return Decoded("\n".join(out), codec, dropped)


def _refuse_other_encoding(data: bytes, label: str) -> None:
    """A file that is not UTF-8 as a whole (not one bad line): the error names the encoding to set."""
    if data.count(b"\x00") > len(data) // 8:
        raise KotuneError(f"dataset '{label}': not UTF-8 text; it looks like UTF-16 without a byte order mark: set "
                          f"encoding: {_utf16_order(data)} on this source")
    wide = [line for line in data.split(b"\n") if not line.isascii()]
    if wide and not any(_decodes(line, "utf-8") for line in wide) and _decodes(data, "cp949"):
        raise KotuneError(f"dataset '{label}': not UTF-8 text; it looks like CP949/EUC-KR (as Korean Windows and "
                          "Excel save it): set encoding: cp949 on this source")


def _utf16_order(data: bytes) -> str:
    head = data[:4096]
    return "utf-16-le" if head[1::2].count(0) >= head[0::2].count(0) else "utf-16-be"


def _decodes(data: bytes, codec: str) -> bool:
    try:
        data.decode(codec)
    except UnicodeDecodeError:
        return False
    return True


def nfc(value):
    """`value` with every string in it (dict keys too) in NFC: composed Hangul, as tokenizers were trained on."""
    if isinstance(value, str):
        return value if unicodedata.is_normalized("NFC", value) else unicodedata.normalize("NFC", value)
    if isinstance(value, dict):
        return {nfc(k): nfc(v) for k, v in value.items()}
    if isinstance(value, list):
        return [nfc(v) for v in value]
    return value


def is_nfc(value) -> bool:
    """Whether every string in `value` is NFC already (the common case: a check, nothing copied)."""
    if isinstance(value, str):
        return unicodedata.is_normalized("NFC", value)
    if isinstance(value, dict):
        return all(is_nfc(k) and is_nfc(v) for k, v in value.items())
    if isinstance(value, list):
        return all(is_nfc(v) for v in value)
    return True


def nfc_rows(rows: list[dict]) -> tuple[list[dict], int]:
    """(the rows in NFC, how many changed)."""
    changed = 0
    for i, row in enumerate(rows):
        if not is_nfc(row):
            rows[i] = nfc(row)
            changed += 1
    return rows, changed


@dataclass
class RowsRead:
    """What reading a source gave: rows and columns in NFC, lines skipped by reason, rows NFC changed."""

    rows: list[dict]
    columns: list[str]
    dropped: Counter = field(default_factory=Counter)
    normalized: int = 0


def in_nfc(label: str, rows: list[dict], columns: list[str], dropped: Counter | None = None,
           text: str | None = None) -> RowsRead:
    """Rows read, NFC-normalized (decomposed Hangul costs several times the tokens), the changed rows logged.
    `text`: the file the rows were parsed from; when it is NFC and has no JSON escapes, so are the rows (one fast
    check instead of one per row)."""
    if text is not None and "\\u" not in text and unicodedata.is_normalized("NFC", text):
        return RowsRead(rows, columns, Counter(dropped or {}), 0)
    rows, changed = nfc_rows(rows)
    if changed:
        logger.warning("dataset %s: %d rows NFC-normalized (decomposed Hangul, as macOS writes it)", label, changed)
    return RowsRead(rows, [nfc(c) for c in columns], Counter(dropped or {}), changed)
