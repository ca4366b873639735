"""Seeded text perturbations: typos, casing changes, punctuation removal and word dropout.

The same functions serve two purposes: `analyze` measures how much accuracy each perturbation
costs on the test split, and `train.augment.*` applies them to training texts (a fresh draw per
epoch) so the model learns to shrug them off. Every function takes a numpy Generator, so a seed
fixes the result.
"""
from __future__ import annotations

import string
from typing import Callable, Sequence

import numpy as np

from hfclf.infra.errors import UserError

# Neighbouring keys on a QWERTY keyboard: the most common source of real typos.
_ROWS = ["qwertyuiop", "asdfghjkl", "zxcvbnm"]
NEIGHBOURS: dict[str, str] = {}
for _r, _row in enumerate(_ROWS):
    for _c, _ch in enumerate(_row):
        near = [_row[j] for j in (_c - 1, _c + 1) if 0 <= j < len(_row)]
        for other in (_r - 1, _r + 1):
            if 0 <= other < len(_ROWS):
                near += [_ROWS[other][j] for j in (_c - 1, _c, _c + 1) if 0 <= j < len(_ROWS[other])]
        NEIGHBOURS[_ch] = "".join(near)
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def _typo(word: str, rng: np.random.Generator) -> str:
    """One typo in a word: swap two neighbouring letters, drop, double or mistype one."""
    i = int(rng.integers(0, len(word) - 1))
    kind = int(rng.integers(0, 4))
    if kind == 0:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if kind == 1:
        return word[:i] + word[i + 1:]
    if kind == 2:
        return word[:i] + word[i] + word[i:]
    keys = NEIGHBOURS.get(word[i].lower())
    if not keys:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    return word[:i] + keys[int(rng.integers(0, len(keys)))] + word[i + 1:]


def typos(text: str, rng: np.random.Generator, rate: float = 0.1, at_least_one: bool = True) -> str:
    """Each word of 3+ letters gets a typo with probability `rate` (at least one per text if asked)."""
    words = text.split(" ")
    eligible = [i for i, w in enumerate(words) if len(w) >= 3 and w.isalpha()]
    if not eligible:
        return text
    hit = [i for i in eligible if rng.random() < rate]
    if not hit and at_least_one:
        hit = [eligible[int(rng.integers(0, len(eligible)))]]
    for i in hit:
        words[i] = _typo(words[i], rng)
    return " ".join(words)


def casing(text: str, rng: np.random.Generator, rate: float = 0.0) -> str:
    """The whole text in UPPER CASE, Title Case or with random words shouted (one picked at random)."""
    kind = int(rng.integers(0, 3))
    if kind == 0:
        return text.upper()
    if kind == 1:
        return text.title()
    words = text.split(" ")
    return " ".join(w.upper() if rng.random() < 0.5 else w for w in words)


def punctuation(text: str, rng: np.random.Generator, rate: float = 0.0) -> str:
    """All ASCII punctuation removed (rng and rate unused: kept for a uniform signature)."""
    stripped = " ".join(text.translate(_PUNCTUATION).split())
    return stripped or text


def word_dropout(text: str, rng: np.random.Generator, rate: float = 0.1) -> str:
    """Each word dropped with probability `rate`; at least one word dropped and one kept."""
    words = text.split()
    if len(words) < 2:
        return text
    keep = rng.random(len(words)) >= rate
    if keep.all():
        keep[int(rng.integers(0, len(words)))] = False
    if not keep.any():
        keep[int(rng.integers(0, len(words)))] = True
    return " ".join(w for w, k in zip(words, keep) if k)


PERTURBATIONS: dict[str, Callable[..., str]] = {
    "typos": typos, "casing": casing, "punctuation": punctuation, "word_dropout": word_dropout,
}


def check_names(names: Sequence[str], key: str) -> None:
    unknown = [n for n in names if n not in PERTURBATIONS]
    if unknown:
        raise UserError(f"{key} has unknown perturbation(s) {unknown}; choose from {sorted(PERTURBATIONS)}.")


def apply(name: str, texts: Sequence[str], seed: int, rate: float) -> list[str]:
    """Perturb every text with one perturbation; the same seed gives the same texts."""
    check_names([name], "perturbation")
    rng = np.random.default_rng(seed)
    fn = PERTURBATIONS[name]
    return [fn(str(t), rng, rate) for t in texts]


def augmenter(kinds: Sequence[str], rate: float, fraction: float, seed: int
              ) -> Callable[[Sequence[str], int], list[str]]:
    """A training-time augmentation: per epoch, `fraction` of the texts get one of `kinds`.

    The draw depends on (seed, epoch) only, so a resumed run sees the same texts as a straight one.
    """
    check_names(kinds, "train.augment")
    if not 0 < fraction <= 1:
        raise UserError(f"train.augment.fraction must be in (0, 1], not {fraction}.")
    fns = [PERTURBATIONS[k] for k in kinds]

    def augment(texts: Sequence[str], epoch: int) -> list[str]:
        rng = np.random.default_rng([seed, epoch, 7919])
        chosen = rng.random(len(texts)) < fraction
        which = rng.integers(0, len(fns), len(texts))
        return [fns[w](t, rng, rate) if c else t for t, c, w in zip(texts, chosen, which)]
    return augment


def augmenter_from(settings, seed: int) -> Callable[[Sequence[str], int], list[str]] | None:
    """The augmentation conf/train.yaml's `train.augment` section turns on, or None (the default)."""
    if not settings:
        return None
    kinds = [name for name in PERTURBATIONS if settings.get(name, False)]
    if not kinds:
        return None
    return augmenter(kinds, float(settings.get("rate", 0.1)), float(settings.get("fraction", 0.5)), seed)
