"""Splitting: keep the splits a dataset has, create the missing ones.

`group` (the default) holds out whole groups of near-duplicate texts (same words once lower-cased,
digits and punctuation ignored: `normalise_text`), so no test text has a twin in training;
`stratified` holds out rows. Both stratify by label when every class can be represented in both
parts, and say so in the log when they cannot (too few rows or groups for the classes).

Multi-label data (task multi_label, `label` a canonical label set) is held out by iterative
stratification (data/multilabel.iterative_holdout): every label keeps about its share on each
side, and a label the data has stays in train. A group of near-duplicates carries the union of
its rows' label sets.
"""
from __future__ import annotations

import logging
import math
import re

import numpy as np
import pandas as pd

from hfclf.data import multilabel
from hfclf.data.dataset import SPLITS
from hfclf.infra.errors import UserError

log = logging.getLogger(__name__)
METHODS = ("stratified", "group")


def normalise_text(text: str) -> str:
    """The form used to find near-duplicates: lowercase, digits as 0, no punctuation, single spaces."""
    text = re.sub(r"\d+", "0", text.lower())
    text = re.sub(r"[^\w\s]", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def held_count(items: int, fraction: float, what: str, name: str) -> int:
    """How many of `items` a `fraction` holds out; refused when a side would be empty."""
    held = math.ceil(fraction * items)
    if held < 1 or items - held < 1:
        raise UserError(f"too few {what} ({items}) to hold out a {name} split of {fraction:.0%}: add data, "
                        f"or provide a '{name}' split in the data.")
    return held


def holdout(labels: pd.Series, fraction: float, seed: int, what: str, name: str) -> np.ndarray:
    """A seeded boolean mask holding out `fraction` of the items (`labels` gives each item's label),
    stratified when it can be: at least 2 items per class, and room for every class on both sides."""
    from sklearn.model_selection import train_test_split

    items, classes = len(labels), labels.nunique()
    held = held_count(items, fraction, what, name)
    stratify = labels.to_numpy() if labels.value_counts().min() >= 2 and min(held, items - held) >= classes else None
    if stratify is None:
        log.warning("%s split: %d %s for %d classes, too few to stratify by label; held out at random, "
                    "so a class may be missing from it", name, items, what, classes)
    _, picked = train_test_split(np.arange(items), test_size=held, random_state=seed, stratify=stratify)
    mask = np.zeros(items, dtype=bool)
    mask[picked] = True
    return mask


def holdout_sets(sets: pd.Series, fraction: float, seed: int, what: str, name: str) -> np.ndarray:
    """`holdout` for multi-label items (`sets` gives each item's canonical label set): iterative
    stratification when both sides get at least 2 items, else at random with a warning."""
    items = len(sets)
    held = held_count(items, fraction, what, name)
    labels = multilabel.all_labels(sets)
    indicator = multilabel.matrix(sets, labels)
    if min(held, items - held) >= 2:
        return multilabel.iterative_holdout(indicator, held, seed)
    log.warning("%s split: %d %s for %d labels, too few to stratify by label; held out at random, "
                "so a label may be missing from it", name, items, what, len(labels))
    mask = np.zeros(items, dtype=bool)
    mask[np.random.default_rng(seed).choice(items, held, replace=False)] = True
    return multilabel.keep_labels_unheld(indicator, mask)


def split(frames: dict[str, pd.DataFrame], method: str, validation_size: float, test_size: float,
          seed: int, task: str = multilabel.SINGLE) -> dict[str, pd.DataFrame]:
    """Keep the splits the data has; create the missing ones (stratified or near-duplicate groups).
    `task` multi_label: labels are canonical label sets, held out by iterative stratification."""
    if method not in METHODS:
        raise UserError(f"prepare.split must be 'stratified' or 'group', not '{method}'.")
    if not 0 < validation_size < 1 or not 0 < test_size < 1 or validation_size + test_size >= 1:
        raise UserError("prepare.validation_size and prepare.test_size must be in (0, 1) and sum below 1.")
    pool = pd.concat([frames[k] for k in ("all", "train") if k in frames], ignore_index=True)
    result = {k: v for k, v in frames.items() if k in ("validation", "test")}
    sizes = {"test": test_size, "validation": validation_size}
    multi = task == multilabel.MULTI
    pick, combine = (holdout_sets, multilabel.union) if multi else (holdout, lambda s: s.mode().iloc[0])
    total = 1.0
    for name in [s for s in ("test", "validation") if s not in result]:
        fraction = sizes[name] / total
        total -= sizes[name]
        if method == "group":   # each group of near-duplicates goes to one side, labelled by its commonest label
            groups = pool["text"].map(normalise_text)          # (multi-label: by all its rows' labels)
            group_labels = pool.groupby(groups)["label"].agg(combine)
            held = set(group_labels.index[pick(group_labels, fraction, seed, "groups of near-duplicate texts", name)])
            in_held = groups.isin(held).to_numpy()
        else:
            in_held = pick(pool["label"], fraction, seed, "rows", name)
        result[name], pool = pool[in_held], pool[~in_held]
    result["train"] = pool
    return {name: result[name].reset_index(drop=True) for name in SPLITS}
