"""Classification metrics: accuracy, macro/weighted F1, per-class scores and the confusion matrix."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def macro_f1(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> float:
    """Macro-F1 over the classes present in y_true or y_pred (sklearn's definition), in numpy."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    matrix = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    tp = np.diag(matrix).astype(float)
    support, predicted = matrix.sum(1), matrix.sum(0)
    present = (support + predicted) > 0
    f1 = np.divide(2 * tp, support + predicted, out=np.zeros_like(tp), where=(support + predicted) > 0)
    return float(f1[present].mean())


def confusion(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> np.ndarray:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], labels: list[str]) -> dict:
    """The headline metrics plus per-class precision / recall / F1 / support."""
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    ids = list(range(len(labels)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=ids, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=ids, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=ids, average="weighted", zero_division=0)),
        "n": int(len(y_true)),
        "per_class": {label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
                      for label, p, r, f, s in zip(labels, precision, recall, f1, support)},
    }


def top_confusions(matrix: np.ndarray, labels: list[str], k: int = 5) -> list[tuple[str, str, int]]:
    """The k most frequent (actual, predicted) mistakes."""
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    pairs = [(labels[i], labels[j], int(off[i, j])) for i, j in zip(*np.nonzero(off))]
    return sorted(pairs, key=lambda pair: -pair[2])[:k]
