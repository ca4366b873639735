"""Bootstrap confidence intervals for accuracy and macro-F1, and for the gap between two models.

The test split is resampled with replacement (seeded); every model is scored on the *same*
resamples, so the interval of a difference is paired and far narrower than comparing two
separate intervals would suggest.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass
class Resamples:
    """Row indices of `samples` bootstrap resamples of a set of `n` rows."""
    indices: np.ndarray            # (samples, n)
    confidence: float

    @classmethod
    def draw(cls, n: int, samples: int, seed: int, confidence: float = 0.95) -> "Resamples":
        if samples < 1 or not 0 < confidence < 1:
            raise ValueError("bootstrap samples must be >= 1 and confidence in (0, 1)")
        rng = np.random.default_rng(seed)
        return cls(rng.integers(0, n, size=(samples, n), dtype=np.int64), confidence)

    def interval(self, values: np.ndarray) -> tuple[float, float]:
        tail = (1 - self.confidence) / 2 * 100
        low, high = np.percentile(values, [tail, 100 - tail])
        return float(low), float(high)


def scores(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int,
           resamples: Resamples) -> dict[str, np.ndarray]:
    """Accuracy and macro-F1 on every resample (macro over the classes present in each resample)."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    idx = resamples.indices
    accuracy = (y_true[idx] == y_pred[idx]).mean(axis=1)
    f1 = np.empty(len(idx))
    k2 = n_classes * n_classes
    chunk = max(1, 4_000_000 // max(1, idx.shape[1]))        # bounded memory on big test sets
    for start in range(0, len(idx), chunk):
        part = idx[start:start + chunk]
        cells = (np.arange(len(part))[:, None] * k2 + y_true[part] * n_classes + y_pred[part]).ravel()
        matrices = np.bincount(cells, minlength=len(part) * k2).reshape(len(part), n_classes, n_classes)
        tp = np.einsum("sii->si", matrices).astype(float)
        total = matrices.sum(2) + matrices.sum(1)
        per_class = np.divide(2 * tp, total, out=np.zeros_like(tp), where=total > 0)
        f1[start:start + len(part)] = per_class.sum(1) / np.maximum((total > 0).sum(1), 1)
    return {"accuracy": accuracy, "macro_f1": f1}


def summarize(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int, resamples: Resamples) -> dict:
    """Point estimates with their intervals: {metric: value, metric_ci_low, metric_ci_high}."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    boot = scores(y_true, y_pred, n_classes, resamples)
    point = {"accuracy": float((y_true == y_pred).mean()),
             "macro_f1": float(scores(y_true, y_pred, n_classes, Resamples(np.arange(len(y_true))[None], 0.95))
                               ["macro_f1"][0])}
    out = {}
    for metric, values in boot.items():
        low, high = resamples.interval(values)
        out |= {metric: point[metric], f"{metric}_ci_low": low, f"{metric}_ci_high": high}
    return out


def paired_difference(y_true: Sequence[int], pred_a: Sequence[int], pred_b: Sequence[int], n_classes: int,
                      resamples: Resamples, metric: str = "macro_f1") -> dict:
    """`metric` of A minus B with a paired bootstrap interval and the share of resamples where A wins."""
    a = scores(y_true, pred_a, n_classes, resamples)[metric]
    b = scores(y_true, pred_b, n_classes, resamples)[metric]
    whole = Resamples(np.arange(len(np.asarray(y_true)))[None], resamples.confidence)
    point = scores(y_true, pred_a, n_classes, whole)[metric][0] - scores(y_true, pred_b, n_classes, whole)[metric][0]
    low, high = resamples.interval(a - b)
    return {"difference": float(point), "ci_low": low, "ci_high": high, "a_better_share": float((a > b).mean())}
