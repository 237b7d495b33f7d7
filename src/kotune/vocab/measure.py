"""What an extension buys, measured: tokens per Hangul syllable of the base and of the extended tokenizer on the
same held-out text, that text without Hangul tokenized id for id alike, and the expected change in training tokens
for a config's data (`kotune vocab report`).

Tokens per syllable is `kotune data`'s measure (`kotune.data.report.tokens_per_syllable`): the tokens of every text
that holds Hangul, spaces and punctuation included, over its Hangul syllables.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from kotune.data.report import HANGUL


@dataclass
class TextMeasure:
    """One tokenizer pair on one text."""

    texts: int
    syllables: int
    tokens_before: int
    tokens_after: int
    per_syllable_before: float | None
    per_syllable_after: float | None
    without_hangul: int  # texts with no Hangul ...
    without_hangul_changed: int  # ... whose ids differ between the two tokenizers (0 is the promise)

    @property
    def change(self) -> float | None:
        """Relative change of tokens per syllable (-0.35 is 35% fewer)."""
        if not self.per_syllable_before or self.per_syllable_after is None:
            return None
        return self.per_syllable_after / self.per_syllable_before - 1

    def as_dict(self) -> dict:
        return {**asdict(self), "change": None if self.change is None else round(self.change, 4)}


def per_syllable(tokenizer, ids: list[list[int]]) -> float | None:
    """kotune data's tokens per Hangul syllable, over rows of ids (every row, not its default first 2,000)."""
    from datasets import Dataset

    from kotune.data.report import tokens_per_syllable

    return tokens_per_syllable(tokenizer, Dataset.from_dict({"input_ids": ids}), limit=len(ids)) if ids else None


def measure_texts(base, new, texts: list[str]) -> TextMeasure:
    """Tokens per syllable of `base` and `new` on `texts` (no special tokens), and the texts without Hangul checked
    id for id."""
    before = base(texts, add_special_tokens=False)["input_ids"]
    after = new(texts, add_special_tokens=False)["input_ids"]
    korean = [i for i, t in enumerate(texts) if HANGUL.search(t)]
    other = [i for i, t in enumerate(texts) if not HANGUL.search(t)]
    return TextMeasure(
        texts=len(texts), syllables=sum(len(HANGUL.findall(t)) for t in texts),
        tokens_before=sum(map(len, before)), tokens_after=sum(map(len, after)),
        per_syllable_before=per_syllable(base, [before[i] for i in korean]),
        per_syllable_after=per_syllable(new, [after[i] for i in korean]),
        without_hangul=len(other), without_hangul_changed=sum(before[i] != after[i] for i in other))


def config_mixture(raw: dict, stage: str | None) -> tuple[str, list]:
    """(stage, every source read) of a config: as the given stage, or as the first registered stage (sft, pt, then
    the others) that accepts its keys and reads its data; else the first stage's problems are raised."""
    from kotune.config.validation import check_config
    from kotune.data.mixture import load_all
    from kotune.errors import ConfigError, KotuneError
    from kotune.stages.registry import STAGES

    order = [stage] if stage else [s for s in ("sft", "pt") if s in STAGES] + [s for s in STAGES
                                                                              if s not in ("sft", "pt")]
    first: KotuneError | None = None
    for name in order:
        _, mixture, *_, problems = check_config(dict(raw), stage=name)
        try:
            if problems:
                raise ConfigError(problems, f"the config, read as a `{name}` config")
            return name, load_all(mixture)
        except KotuneError as err:
            first = first or err
    raise first


def measure_config(base, new, argv: list[str], stage: str | None = None) -> dict:
    """The expected change in training tokens for a config's data: every row's text once, times its source's
    weight (as the mixture draws it; caps and templates aside), in the base's tokens and in the new ones."""
    from kotune.config.loading import read_config
    from kotune.vocab.corpus import record_texts

    path, raw = read_config(argv)
    name, loaded = config_mixture(raw, stage)
    sources, total_before, total_after = {}, 0.0, 0.0
    for rows in loaded:
        texts = [t for record in rows.records for t in record_texts(record) if t.strip()]
        before = sum(map(len, base(texts, add_special_tokens=False)["input_ids"])) if texts else 0
        after = sum(map(len, new(texts, add_special_tokens=False)["input_ids"])) if texts else 0
        weight = rows.source.weight if rows.source.weight is not None else 1.0
        sources[rows.source.id] = {"rows": len(rows.records), "weight": weight, "tokens_before": before,
                                   "tokens_after": after}
        total_before += weight * before
        total_after += weight * after
    change = total_after / total_before - 1 if total_before else None
    return {"config": path, "stage": name, "sources": sources, "tokens_before": round(total_before),
            "tokens_after": round(total_after), "change": None if change is None else round(change, 4)}


def format_measure(label: str, m: TextMeasure) -> str:
    change = "n/a" if m.change is None else f"{100 * m.change:+.1f}%"
    lines = [f"{label}: {m.texts} texts, {m.syllables} Hangul syllables",
             f"  tokens: {m.tokens_before} -> {m.tokens_after}",
             f"  tokens per Hangul syllable: {m.per_syllable_before} -> {m.per_syllable_after} ({change})"]
    if m.without_hangul:
        lines.append(f"  texts without Hangul: {m.without_hangul}, tokenized differently: {m.without_hangul_changed}")
    return "\n".join(lines)


def format_config(report: dict) -> str:
    lines = [f"training data of {report['config']} (as a `{report['stage']}` config; each row's text once x weight)"]
    for sid, s in report["sources"].items():
        lines.append(f"  {sid[-48:]:48s} rows {s['rows']:7d} x {s['weight']:g}: tokens {s['tokens_before']} -> "
                     f"{s['tokens_after']}")
    change = "n/a" if report["change"] is None else f"{100 * report['change']:+.1f}%"
    lines.append(f"  training tokens: {report['tokens_before']} -> {report['tokens_after']} ({change})")
    return "\n".join(lines)
