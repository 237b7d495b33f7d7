"""The new-token list that `kotune vocab build` writes and `kotune vocab extend` reads: a TSV, one token a line, in
the order they were learned (which is their merge order and the order of their new ids; on a byte-level base a
merge may end in an entry the base already has, which keeps its id).

Columns: `token` (the entry exactly as the base's vocabulary spells it: `Ġ`/`▁` for a space), `frequency` (its
count in the corpus when it was learned), `merge` (the two entries it is merged from, separated by a space, or `-`
for a single character added as it is), and `text` (readable, a leading space shown as ▁; ignored on reading).
Lines starting with `#` are comments; the first records the base and the options.

>>> rows = [NewToken("ĠìĦľìļ¸", 12, "ĠìĦľ", "ìļ¸", " 서울")]
>>> text = dumps(rows, "# base: x")
>>> print(text.splitlines()[2])
ĠìĦľìļ¸	12	ĠìĦľ ìļ¸	▁서울
>>> loads(text, "t.tsv") == rows
True
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kotune.errors import KotuneError

HEADER = "token\tfrequency\tmerge\ttext"


@dataclass(frozen=True)
class NewToken:
    """One new vocabulary entry: `left` + `right` == `token` for a merge; both empty for a character added alone."""

    token: str
    frequency: int
    left: str = ""
    right: str = ""
    text: str = ""

    @property
    def is_merge(self) -> bool:
        return bool(self.left)


def dumps(tokens: list[NewToken], comment: str = "") -> str:
    lines = [comment] if comment else []
    lines.append(HEADER)
    for t in tokens:
        merge = f"{t.left} {t.right}" if t.is_merge else "-"
        lines.append(f"{t.token}\t{t.frequency}\t{merge}\t{t.text.replace(' ', chr(0x2581))}")
    return "\n".join(lines) + "\n"


def loads(text: str, label: str) -> list[NewToken]:
    """Parse a token list; every malformed line is reported at once."""
    rows, problems = [], []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#") or line == HEADER:
            continue
        cells = line.split("\t")
        if len(cells) < 3:
            problems.append(f"line {number}: expected token<TAB>frequency<TAB>merge[<TAB>text], got {line[:60]!r}")
            continue
        token, frequency, merge = cells[:3]
        left, _, right = merge.partition(" ") if merge != "-" else ("", "", "")
        if merge != "-" and left + right != token:
            problems.append(f"line {number}: merge {merge!r} does not spell the token {token!r}")
        if not frequency.isdigit():
            problems.append(f"line {number}: frequency {frequency!r} is not a whole number")
            continue
        text = cells[3].replace(chr(0x2581), " ") if len(cells) > 3 else ""
        rows.append(NewToken(token, int(frequency), left, right, text))
    if problems:
        raise KotuneError(f"token list '{label}': " + "; ".join(problems[:10]) +
                          (f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""))
    if not rows:
        raise KotuneError(f"token list '{label}' holds no tokens; write one with `kotune vocab build`")
    return rows


def read_tokens(path: str | Path) -> list[NewToken]:
    path = Path(path)
    if not path.is_file():
        raise KotuneError(f"token list '{path}' does not exist; write one with `kotune vocab build ... --out {path}`")
    return loads(path.read_text(encoding="utf-8"), str(path))


def write_tokens(path: str | Path, tokens: list[NewToken], comment: str = "") -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.writing")
    tmp.write_text(dumps(tokens, comment), encoding="utf-8")
    tmp.replace(path)
