"""GRPO's shipped rewards read dataset columns (`exact_answer` needs `answer`, TRL's `accuracy_reward` `solution`).
TRL calls a reward only at the first step, after the model has loaded and output_dir has files in it; a missing column
is refused with the config instead, naming the reward, the column and the columns the file has. Only local files are
read (Hub ids are checked when they load), and a file that cannot be read here is left to the data path, which names
the problem."""

from __future__ import annotations

import unicodedata

from kotune.config.schema import DatasetMixture, DatasetSource
from kotune.errors import KotuneError
from kotune.stages.rewards import NEEDS_COLUMNS


def source_columns(source: DatasetSource) -> list[str] | None:
    """The columns of a local prompt file under kotune's names (after `columns:` renames); None when unknown."""
    from kotune.data.sources import local_file

    try:
        path, reader = local_file(source)
        if path is None:
            return None
        if reader == "parquet":
            import pyarrow.parquet as pq

            columns = list(pq.read_schema(path).names)
        else:
            from kotune.data.local_rows import read_local

            columns = read_local(path, reader, source.id, source.encoding, strict=False).columns
    except (KotuneError, OSError, ValueError):
        return None
    nfc = lambda text: unicodedata.normalize("NFC", str(text))  # noqa: E731 - macOS writes headers in NFD
    renames = source.columns if isinstance(source.columns, dict) else {}  # a list keeps columns under our names
    ours = {nfc(theirs): ours for ours, theirs in renames.items()}
    return [ours.get(nfc(c), nfc(c)) for c in columns]


def reward_column_problems(rewards: list, mixture: DatasetMixture) -> list[str]:
    """One problem per shipped reward and source that lacks a column the reward reads."""
    problems = []
    for i, source in enumerate(mixture.datasets):
        needed = {name: NEEDS_COLUMNS[name] for name in rewards if isinstance(name, str) and name in NEEDS_COLUMNS}
        if not needed or source.format not in ("prompt", None):  # None: inferred when read (GRPO reads prompts)
            continue
        columns = source_columns(source)
        if columns is None:
            continue
        for name, wanted in needed.items():
            for column in wanted:
                if column not in columns:
                    problems.append(
                        f"reward_funcs: {name} reads the column '{column}', and dataset_mixture.datasets[{i}] "
                        f"'{source.id}' has none (its columns: {', '.join(columns) or 'none'}). Add the column, "
                        f"map yours with columns: {{{column}: your_column}}, or drop {name} from reward_funcs")
    return problems
