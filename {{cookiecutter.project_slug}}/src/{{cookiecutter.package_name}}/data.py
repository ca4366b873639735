"""Your own data loading and cleaning, for what the built-in reader cannot know (unused by default).

Switch a hook on by naming it in conf/data/default.yaml:

    loader: {{ cookiecutter.package_name }}.data.load     # instead of the built-in reader of data.source
    clean: {{ cookiecutter.package_name }}.data.clean     # after reading, before validation and splitting

`prepare` is the only stage that runs this file, so dvc.yaml lists it as a dependency of
`prepare` alone: editing it re-runs prepare (and whatever its outputs feed), nothing else.
"""
from __future__ import annotations

import pandas as pd


def load(source: str) -> pd.DataFrame | dict[str, pd.DataFrame]:
    """Read `source` (data.source) into rows with the data.text_column and data.label_column columns.

    Return one DataFrame (prepare splits it), or a dict of DataFrames keyed by split name
    ("train", "validation", "test") to keep splits you already have. Extra columns are kept
    (failure analysis slices by them).
    """
    return pd.read_csv(source, dtype=str)


def clean(frame: pd.DataFrame) -> pd.DataFrame:
    """Fix the loaded rows: drop or repair what you know is wrong. Columns still carry their
    source names (data.text_column, data.label_column). Return the cleaned frame."""
    return frame
