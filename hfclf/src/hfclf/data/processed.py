"""The prepared splits (data/processed/, written by data/dataset.write_splits) read back without pandas.

The train stage needs two columns of two splits as lists; reading them with pyarrow, which pandas
reads parquet with anyway, keeps pandas' import (about 0.25 s of a 2-core machine) out of every
training run's start-up (issue #14). Stages that work on DataFrames use dataset.read_split.
"""
from __future__ import annotations

import json
from pathlib import Path

from hfclf.infra.errors import UserError

LABELS_FILE = "labels.json"


def split_path(processed: Path, name: str) -> Path:
    """data/processed/<name>.parquet, or a UserError saying how to make it."""
    return _existing(processed / f"{name}.parquet")


def read_labels(processed: Path) -> dict:
    """labels.json: the label list, the task, the data's fingerprint and source."""
    return json.loads(_existing(processed / LABELS_FILE).read_text(encoding="utf-8"))


def read_columns(processed: Path, name: str, columns: tuple[str, ...] = ("text", "label")) -> dict[str, list]:
    """`columns` of split `name` as Python lists, in the split's row order. (`pq.ParquetFile`, not
    `pq.read_table`: the dataset API behind the latter imports pandas.)"""
    import pyarrow
    import pyarrow.parquet as pq

    path = split_path(processed, name)
    redo = "run `make prepare` (or `dvc repro prepare`) again."
    try:
        with pq.ParquetFile(path) as parquet:
            present = parquet.schema_arrow.names
            missing = [c for c in columns if c not in present]
            if missing:
                raise UserError(f"'{path}' has no column {', '.join(map(repr, missing))} (it has "
                                f"{', '.join(present)}): it was not written by this pipeline's prepare stage; {redo}")
            table = parquet.read(columns=list(columns))
    except (OSError, pyarrow.ArrowException) as err:
        raise UserError(f"'{path}' cannot be read as Parquet ({err}): {redo}") from None
    return {column: table.column(column).to_pylist() for column in columns}


def _existing(path: Path) -> Path:
    if not path.exists():
        raise UserError(f"'{path}' is missing: run `make prepare` (or `dvc repro prepare`) first.")
    return path
