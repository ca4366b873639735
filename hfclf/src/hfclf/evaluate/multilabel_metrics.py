"""Multi-label decisions: the F1 arithmetic and the per-label decision thresholds.

A label is predicted when its sigmoid probability reaches its threshold. train tunes the thresholds
on the validation split (`tune_thresholds`) and saves them with the model; evaluate, analyze and
the predictor apply them (`decide`). Arrays are rows x labels: probabilities, and 0/1 indicator
matrices (`hfclf.data.multilabel.matrix`). F1 is 2TP / (2TP + FP + FN), 0 when nothing was true or
predicted (scikit-learn's zero_division=0).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

DEFAULT_GRID = np.round(np.arange(0.05, 0.951, 0.05), 2)


def indicator(values, name: str, shape: tuple | None = None) -> np.ndarray:
    """`values` as a 2-D array (rows x labels), of `shape` when given; a ValueError naming it otherwise."""
    array = np.asarray(values)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a rows x labels matrix, got shape {array.shape}")
    if shape is not None and array.shape != shape:
        raise ValueError(f"{name} has shape {array.shape}, expected {shape}")
    return array


def f1_from_counts(tp, fp, fn) -> np.ndarray:
    """2TP / (2TP + FP + FN), 0 where nothing was true or predicted (zero_division=0)."""
    tp, denominator = np.asarray(tp, dtype=float), 2 * np.asarray(tp, dtype=float) + fp + fn
    return np.divide(2 * tp, denominator, out=np.zeros(np.shape(denominator)), where=denominator > 0)


# --------------------------------------------------------------------------- thresholds

def _label_f1_curve(probs: np.ndarray, truth: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """One label's F1 at each candidate threshold (predict when prob >= threshold), via one sort."""
    order = np.sort(probs)
    positives_from = np.concatenate([np.cumsum(truth[np.argsort(probs, kind="stable")][::-1])[::-1], [0]])
    first = np.searchsorted(order, candidates, side="left")       # rows from `first` on are predicted
    predicted = len(probs) - first
    tp = positives_from[first]
    return f1_from_counts(tp, predicted - tp, truth.sum() - tp)


def _candidates(probs: np.ndarray, grid: np.ndarray, fixed: Sequence[float]) -> np.ndarray:
    """The grid, the `fixed` values, and the midpoints between consecutive distinct probabilities: the
    midpoints make every achievable decision on validation reachable, with a margin either side."""
    distinct = np.unique(probs)
    return np.unique(np.concatenate([grid, fixed, (distinct[1:] + distinct[:-1]) / 2]))


def _best_threshold(curve: np.ndarray, candidates: np.ndarray) -> float:
    """The F1-maximising candidate; ties go to the one closest to 0.5 (then the higher one)."""
    best = np.flatnonzero(curve >= curve.max() - 1e-12)
    distance = np.abs(candidates[best] - 0.5)
    closest = best[distance <= distance.min() + 1e-12]
    return float(candidates[closest.max()])


def _guard_micro_f1(truth: np.ndarray, probs: np.ndarray, thresholds: np.ndarray, default: float) -> np.ndarray:
    """Labels whose own best threshold lowers the validation micro-F1 go back to `default`.

    A label the model barely separates has its best F1 at a threshold near 0 (predict it for every
    text: F1 = 2p / (1 + p) for prevalence p beats never predicting it), which floods every prediction
    with that label. Each label is tried at `default`, the least improved label first, keeping the
    change when micro-F1 (all labels pooled: the headline) rises."""
    thresholds = thresholds.copy()

    def counts(pred):
        return np.stack([(truth & pred).sum(0), (~truth & pred).sum(0), (truth & ~pred).sum(0)])   # 3 x labels

    tuned, untuned = counts(probs >= thresholds), counts(probs >= default)
    gain = f1_from_counts(*tuned) - f1_from_counts(*untuned)
    total = tuned.sum(1)
    for j in np.argsort(gain, kind="stable"):
        if thresholds[j] == default:
            continue
        trial = total - tuned[:, j] + untuned[:, j]
        if f1_from_counts(*trial) > f1_from_counts(*total) + 1e-12:
            thresholds[j], total = default, trial
    return thresholds


def tune_thresholds(probs, y_true, grid: Sequence[float] | None = None, default: float = 0.5,
                    min_support: int = 1, labels: Sequence[str] | None = None, guard_micro_f1: bool = True) -> dict:
    """Per-label thresholds maximising each label's validation F1 - except where that lowers the
    validation micro-F1 (`guard_micro_f1`, `_guard_micro_f1`): such a label keeps `default`.

    `probs` and `y_true` are rows x labels (sigmoid probabilities, 0/1 truth). Candidates are `grid`
    (None: 0.05 ... 0.95 by 0.05, plus the midpoints between the label's distinct validation
    probabilities), 0.5 and `default`. Ties go to the threshold closest to 0.5. Labels with fewer than
    `min_support` validation positives (at least 1) keep `default`. The "default" figures score the
    untuned rule, every label at `default`; no label's tuned validation F1 is below it.

    Returns (JSON-ready) {"thresholds": [L floats], "labels_tuned": int, "micro_f1_default",
    "micro_f1_tuned", "macro_f1_default", "macro_f1_tuned", "per_label": [{"label" (the name when
    `labels` is given, else the column), "support", "threshold", "tuned", "kept_default_for_micro_f1"
    (guarded), "f1_default", "f1_tuned"}]}.
    """
    probs = indicator(probs, "probs").astype(np.float64)
    truth = indicator(y_true, "y_true", probs.shape).astype(bool)
    if not (np.all(probs >= 0) and np.all(probs <= 1)):
        raise ValueError("probs must be probabilities in [0, 1] (per-label sigmoid outputs)")
    if labels is not None and len(labels) != probs.shape[1]:
        raise ValueError(f"{len(labels)} label names for {probs.shape[1]} probability columns")
    fixed = [0.5, float(default)]
    thresholds, per_label = np.full(probs.shape[1], float(default)), []
    for j in range(probs.shape[1]):
        support = int(truth[:, j].sum())
        tuned = support >= max(min_support, 1)
        if tuned:
            candidates = (_candidates(probs[:, j], DEFAULT_GRID, fixed) if grid is None
                          else np.unique(np.concatenate([np.asarray(grid, dtype=float), fixed])))
            thresholds[j] = _best_threshold(_label_f1_curve(probs[:, j], truth[:, j], candidates), candidates)
        per_label.append({"label": labels[j] if labels is not None else j, "support": support, "tuned": tuned})
    if guard_micro_f1:
        guarded = _guard_micro_f1(truth, probs, thresholds, float(default))
        for row, before, after in zip(per_label, thresholds, guarded):
            row["kept_default_for_micro_f1"] = bool(before != after)
        thresholds = guarded
    for row, threshold in zip(per_label, thresholds):
        row["threshold"] = float(threshold)
    untuned, tuned_pred = probs >= default, probs >= thresholds
    before, after = label_f1(truth, untuned), label_f1(truth, tuned_pred)
    for row, f1_default, f1_tuned in zip(per_label, before, after):
        row |= {"f1_default": float(f1_default), "f1_tuned": float(f1_tuned)}
    return {"thresholds": [float(t) for t in thresholds], "labels_tuned": sum(row["tuned"] for row in per_label),
            "micro_f1_default": micro_f1(truth, untuned), "micro_f1_tuned": micro_f1(truth, tuned_pred),
            "macro_f1_default": float(before.mean()), "macro_f1_tuned": float(after.mean()),
            "per_label": per_label}


def decide(probs, thresholds) -> np.ndarray:
    """0/1 decisions (int8): a label is predicted when its probability reaches its threshold."""
    probs = indicator(probs, "probs")
    thresholds = np.broadcast_to(np.asarray(thresholds, dtype=float), (probs.shape[1],))
    return (probs >= thresholds).astype(np.int8)


def label_f1(y_true, y_pred) -> np.ndarray:
    """Each label's F1 (columns of two rows x labels 0/1 matrices)."""
    truth, pred = np.asarray(y_true, dtype=bool), np.asarray(y_pred, dtype=bool)
    return f1_from_counts((truth & pred).sum(0), (~truth & pred).sum(0), (truth & ~pred).sum(0))


def micro_f1(y_true, y_pred) -> float:
    """F1 over every (row, label) decision."""
    truth, pred = np.asarray(y_true, dtype=bool), np.asarray(y_pred, dtype=bool)
    return float(f1_from_counts((truth & pred).sum(), (~truth & pred).sum(), (truth & ~pred).sum()))
