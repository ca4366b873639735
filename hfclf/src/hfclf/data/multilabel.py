"""Multi-label data (data.task=multi_label): a text carries a set of labels.

In the prepared splits a row's `label` is its label set written canonically - a JSON list of the
labels, sorted and without repeats (`["billing", "refund"]`) - so every split stays a plain
text/label table: hashing (the fingerprint), grouping and duplicate checks work unchanged, and a
parquet file reads the same everywhere. `labels.json` records `"task": "multi_label"`; every stage
after prepare reads the task from there (or from the model's classifier.json), never from config.

Reading a raw label column into label sets (JSON lists, delimited strings or 0/1 columns) is
data/label_formats.py; here: the canonical form, the model-side arrays (`matrix`, rows x labels,
0/1), rare labels (both tasks), the profile's statistics and iterative stratification.
"""
from __future__ import annotations

import json
import logging
from collections import Counter
from itertools import combinations
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from hfclf.infra.errors import UserError

if TYPE_CHECKING:   # imported where used: training imports this module for `matrix`, and pandas takes 0.25 s
    import pandas as pd

log = logging.getLogger(__name__)

SINGLE, MULTI = "single_label", "multi_label"
TASKS = (SINGLE, MULTI)


def is_multi_label(info: dict | None) -> bool:
    """True for labels.json / classifier.json contents of a multi-label task."""
    return bool(info) and info.get("task", SINGLE) == MULTI


def encode(labels: Iterable[str]) -> str:
    """A label set in its canonical form: a JSON list, sorted, no repeats."""
    return json.dumps(sorted({str(label) for label in labels}), ensure_ascii=False)


def decode(value: str) -> list[str]:
    """The labels of one canonical label set."""
    return json.loads(value)


def decode_all(values: Iterable[str]) -> list[list[str]]:
    return [json.loads(v) for v in values]


def all_labels(values: Iterable[str]) -> list[str]:
    """The sorted distinct labels across canonical label sets."""
    return sorted({label for v in values for label in json.loads(v)})


def matrix(values: Iterable[str], labels: Sequence[str]) -> np.ndarray:
    """Rows x labels 0/1 matrix (float32) of canonical label sets; labels outside `labels` are ignored."""
    index = {label: i for i, label in enumerate(labels)}
    values = list(values)
    out = np.zeros((len(values), len(labels)), dtype=np.float32)
    for row, value in enumerate(values):
        for label in json.loads(value):
            column = index.get(label)
            if column is not None:
                out[row, column] = 1.0
    return out


def sets_from_matrix(indicator: np.ndarray, labels: Sequence[str]) -> list[list[str]]:
    """The label set of each row of a 0/1 (or boolean) matrix."""
    return [[labels[j] for j in np.flatnonzero(row)] for row in np.asarray(indicator)]


def label_support(values: pd.Series, labels: Sequence[str]) -> dict[str, int]:
    """Rows carrying each label."""
    counts = matrix(values, labels).sum(0)
    return {label: int(n) for label, n in zip(labels, counts)}


def union(values: Iterable[str]) -> str:
    """The canonical set of all labels of several canonical label sets (a group of near-duplicates)."""
    return encode(label for value in values for label in json.loads(value))


def readable(value: str) -> str:
    """A canonical label set for people: `billing + refund`, or `(no label)`."""
    labels = json.loads(value)
    return " + ".join(labels) if labels else "(no label)"


# --------------------------------------------------------------------------- rare labels (both tasks)

RARE_POLICIES = ("refuse", "drop")


def rare_labels(support: pd.Series, minimum: int, policy: str, source: str, column: str) -> dict[str, int]:
    """Labels (single-label: classes) with fewer than `minimum` rows, from `support` (label -> rows).

    policy `refuse` raises a UserError naming them (`column` says where they are written); `drop`
    returns them, label -> rows, for the caller to drop."""
    if policy not in RARE_POLICIES:
        raise UserError(f"prepare.rare_labels must be 'refuse' or 'drop', not {policy!r} (conf/prepare.yaml).")
    too_few = support[support < minimum]
    if too_few.empty:
        return {}
    if policy == "refuse":
        listed = ", ".join(f"{label!r} ({n})" for label, n in too_few.items())
        raise UserError(f"'{source}': {len(too_few)} label(s) in {column} have fewer than {minimum} rows, too few "
                        f"to split into train/validation/test: {listed}. Add examples, merge or drop these labels, "
                        "or lower prepare.min_examples_per_class; or set prepare.rare_labels=drop to leave them out.")
    return {str(label): int(n) for label, n in too_few.items()}


def drop_labels(frames: dict[str, pd.DataFrame], dropped: Iterable[str]) -> tuple[dict[str, pd.DataFrame], int]:
    """Remove `dropped` labels from every label set; rows left without a label go too (their count returned)."""
    dropped = set(dropped)
    out, emptied = {}, 0
    for name, frame in frames.items():
        kept = frame["label"].map(lambda value: encode(set(json.loads(value)) - dropped))
        empty = kept.eq("[]")
        emptied += int(empty.sum())
        out[name] = frame.assign(label=kept)[~empty].reset_index(drop=True)
    return out, emptied


def support_series(values: pd.Series) -> pd.Series:
    """Rows carrying each label, most frequent first (ties by name)."""
    import pandas as pd

    counts = Counter(label for value in values for label in json.loads(value))
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return pd.Series(dict(ordered), dtype=int)


# --------------------------------------------------------------------------- statistics for the profile

def cardinality(values: pd.Series) -> dict:
    """Labels per row: mean, max, and the share of rows with 0, 1, 2 and 3+ labels."""
    sizes = np.fromiter((len(json.loads(v)) for v in values), dtype=np.int64, count=len(values))
    if not len(sizes):
        return {"mean": 0.0, "max": 0, "rows_with": {"0": 0.0, "1": 0.0, "2": 0.0, "3+": 0.0}}
    shares = {str(n): float((sizes == n).mean()) for n in (0, 1, 2)} | {"3+": float((sizes >= 3).mean())}
    return {"mean": round(float(sizes.mean()), 3), "max": int(sizes.max()),
            "rows_with": {k: round(v, 4) for k, v in shares.items()}}


def co_occurrence(values: pd.Series, top: int = 10) -> list[dict]:
    """The `top` most frequent label pairs in one row: [{"labels": [a, b], "rows": n}], most frequent first."""
    pairs = Counter(pair for value in values for pair in combinations(json.loads(value), 2))
    ordered = sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return [{"labels": list(pair), "rows": n} for pair, n in ordered]


# --------------------------------------------------------------------------- iterative stratification

def iterative_holdout(indicator: np.ndarray, held: int, seed: int) -> np.ndarray:
    """A boolean mask of about `held` items chosen by iterative stratification (Sechidis et al. 2011,
    `iterative-stratification`): each label keeps close to its share on both sides. Then every label
    the items carry keeps at least one item on the unheld side (train) where the held side can spare one."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

    items = indicator.shape[0]
    y = indicator.astype(bool)
    if y.shape[1] < 2:   # the library wants a multi-label indicator: a constant column changes nothing
        y = np.hstack([y, np.zeros((items, 2 - y.shape[1]), dtype=bool)])
    splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=held, random_state=seed)
    _, picked = next(splitter.split(np.zeros(items), y))
    mask = np.zeros(items, dtype=bool)
    mask[picked] = True
    return keep_labels_unheld(indicator, mask)


def keep_labels_unheld(indicator: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """For each label found only among held items: move its held item with the fewest labels back, and
    hold out in its place the first unheld item whose every label stays on the unheld side (none: the
    held side shrinks, never to nothing)."""
    mask = mask.copy()
    y = indicator.astype(bool)
    for label in np.flatnonzero(y.any(0)):
        if y[~mask, label].any():
            continue
        unheld_support = y[~mask].sum(0)
        spare = np.flatnonzero(~mask & ~(y & (unheld_support < 2)).any(1))
        if not len(spare) and mask.sum() <= 1:
            continue
        carriers = np.flatnonzero(mask & y[:, label])
        mask[carriers[np.argmin(y[carriers].sum(1))]] = False
        if len(spare):
            mask[spare[0]] = True
    return mask


# --------------------------------------------------------------------------- validation (dataset.validate)

def check_label_sets(frames: dict[str, pd.DataFrame], source: str, where: str, minimum: int,
                     policy: str) -> tuple[dict[str, pd.DataFrame], dict[str, int], int]:
    """At least two labels; labels with fewer than `minimum` rows refused or removed from every set
    (prepare.rare_labels). Returns the frames, the dropped labels (label -> rows) and how many rows
    were left without a label and dropped."""
    import pandas as pd

    support = support_series(pd.concat([f["label"] for f in frames.values()]))
    if len(support) < 2:
        raise UserError(f"'{source}': {where} hold(s) only one label ({support.index[0]!r}, on all "
                        f"{support.iloc[0]} rows); a multi-label classifier needs at least two.")
    rare = rare_labels(support, minimum, policy, source, where)
    if not rare:
        return frames, {}, 0
    frames, emptied = drop_labels(frames, rare)
    log.warning("removed %d label(s) with fewer than %d rows from every label set (prepare.rare_labels=drop): %s; "
                "%d rows had no other label and were dropped", len(rare), minimum,
                ", ".join(f"{k} ({v})" for k, v in rare.items()), emptied)
    left = support_series(pd.concat([f["label"] for f in frames.values()]))
    if len(left) < 2:
        raise UserError(f"'{source}': after removing the labels with fewer than {minimum} rows "
                        f"(prepare.rare_labels=drop), {len(left)} label is left; a multi-label classifier needs "
                        "at least two.")
    return frames, rare, emptied
