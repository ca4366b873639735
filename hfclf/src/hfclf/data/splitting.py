"""Splitting: keep the splits a dataset has, create the missing ones.

`group` (the default) holds out whole groups of near-duplicate texts (same words once lower-cased,
digits and punctuation ignored: `normalise_text`), so no test text has a twin in training;
`stratified` holds out rows. Both stratify by label when every class can be represented in both
parts, and say so in the log when they cannot (too few rows or groups for the classes).
"""
from __future__ import annotations

import logging
import math
import re

import numpy as np
import pandas as pd

from hfclf.data.dataset import SPLITS
from hfclf.infra.errors import UserError

log = logging.getLogger(__name__)
METHODS = ("stratified", "group")


def normalise_text(text: str) -> str:
    """The form used to find near-duplicates: lowercase, digits as 0, no punctuation, single spaces."""
    text = re.sub(r"\d+", "0", text.lower())
    text = re.sub(r"[^\w\s]", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def holdout(labels: pd.Series, fraction: float, seed: int, what: str, name: str) -> np.ndarray:
    """A seeded boolean mask holding out `fraction` of the items (`labels` gives each item's label),
    stratified when it can be: at least 2 items per class, and room for every class on both sides."""
    from sklearn.model_selection import train_test_split

    items, classes = len(labels), labels.nunique()
    held = math.ceil(fraction * items)
    if held < 1 or items - held < 1:
        raise UserError(f"too few {what} ({items}) to hold out a {name} split of {fraction:.0%}: add data, "
                        f"or provide a '{name}' split in the data.")
    stratify = labels.to_numpy() if labels.value_counts().min() >= 2 and min(held, items - held) >= classes else None
    if stratify is None:
        log.warning("%s split: %d %s for %d classes, too few to stratify by label; held out at random, "
                    "so a class may be missing from it", name, items, what, classes)
    _, picked = train_test_split(np.arange(items), test_size=held, random_state=seed, stratify=stratify)
    mask = np.zeros(items, dtype=bool)
    mask[picked] = True
    return mask


def split(frames: dict[str, pd.DataFrame], method: str, validation_size: float, test_size: float,
          seed: int) -> dict[str, pd.DataFrame]:
    """Keep the splits the data has; create the missing ones (stratified or near-duplicate groups)."""
    if method not in METHODS:
        raise UserError(f"prepare.split must be 'stratified' or 'group', not '{method}'.")
    if not 0 < validation_size < 1 or not 0 < test_size < 1 or validation_size + test_size >= 1:
        raise UserError("prepare.validation_size and prepare.test_size must be in (0, 1) and sum below 1.")
    pool = pd.concat([frames[k] for k in ("all", "train") if k in frames], ignore_index=True)
    result = {k: v for k, v in frames.items() if k in ("validation", "test")}
    sizes = {"test": test_size, "validation": validation_size}
    total = 1.0
    for name in [s for s in ("test", "validation") if s not in result]:
        fraction = sizes[name] / total
        total -= sizes[name]
        if method == "group":   # each group of near-duplicates goes to one side, labelled by its commonest label
            groups = pool["text"].map(normalise_text)
            group_labels = pool.groupby(groups)["label"].agg(lambda s: s.mode().iloc[0])
            held = set(group_labels.index[holdout(group_labels, fraction, seed, "groups of near-duplicate texts",
                                                  name)])
            in_held = groups.isin(held).to_numpy()
        else:
            in_held = holdout(pool["label"], fraction, seed, "rows", name)
        result[name], pool = pool[in_held], pool[~in_held]
    result["train"] = pool
    return {name: result[name].reset_index(drop=True) for name in SPLITS}
