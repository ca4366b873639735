"""Multi-label scoring of the test split (data.task=multi_label): the metrics, the per-label
confusion matrices and their bootstrap intervals. The decision thresholds and the F1 arithmetic are
multilabel_metrics.py's.

F1 follows scikit-learn with zero_division=0 everywhere: a label (macro) or a row (samples) with
neither true nor predicted labels scores 0, in the point estimates and in every resample alike.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from hfclf.evaluate.bootstrap import Resamples
from hfclf.evaluate.multilabel_metrics import f1_from_counts, indicator

HEADLINE = ("micro_f1", "macro_f1", "samples_f1", "subset_accuracy")


# --------------------------------------------------------------------------- test metrics

def metrics(y_true, y_pred, labels: Sequence[str]) -> dict:
    """Headline multi-label metrics (scikit-learn, zero_division=0) and per-label scores."""
    from sklearn.metrics import (accuracy_score, f1_score, hamming_loss, precision_recall_fscore_support,
                                 precision_score, recall_score)

    truth = indicator(y_true, "y_true").astype(np.int8)
    pred = indicator(y_pred, "y_pred", truth.shape).astype(np.int8)
    if truth.shape[1] != len(labels):
        raise ValueError(f"{len(labels)} labels for {truth.shape[1]} indicator columns")
    out = {f"{avg}_{name}": float(score(truth, pred, average=avg, zero_division=0))
           for name, score in (("f1", f1_score), ("precision", precision_score), ("recall", recall_score))
           for avg in ("micro", "macro")}
    precision, recall, f1, support = precision_recall_fscore_support(truth, pred, average=None, zero_division=0)
    return out | {
        "samples_f1": float(f1_score(truth, pred, average="samples", zero_division=0)),
        "subset_accuracy": float(accuracy_score(truth, pred)),
        "hamming_loss": float(hamming_loss(truth, pred)),
        "label_cardinality_true": float(truth.sum(1).mean()),
        "label_cardinality_predicted": float(pred.sum(1).mean()),
        "rows_without_prediction": int((pred.sum(1) == 0).sum()),
        "n": int(len(truth)),
        "per_label": {label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
                      for label, p, r, f, s in zip(labels, precision, recall, f1, support)},
    }


def confusion_matrices(y_true, y_pred, labels: Sequence[str]) -> dict[str, dict[str, int]]:
    """Each label's 2x2 confusion matrix (scikit-learn's multilabel_confusion_matrix) as JSON-ready counts."""
    from sklearn.metrics import multilabel_confusion_matrix

    cells = multilabel_confusion_matrix(np.asarray(y_true, dtype=np.int8), np.asarray(y_pred, dtype=np.int8))
    return {label: {"tn": int(m[0, 0]), "fp": int(m[0, 1]), "fn": int(m[1, 0]), "tp": int(m[1, 1])}
            for label, m in zip(labels, cells)}


# --------------------------------------------------------------------------- bootstrap

def _row_weights(indices: np.ndarray, n: int) -> np.ndarray:
    """How often each row is drawn in each resample: (resamples, n) counts."""
    cells = (np.arange(len(indices))[:, None] * n + indices).ravel()
    return np.bincount(cells, minlength=len(indices) * n).reshape(len(indices), n).astype(np.float64)


def resample_scores(y_true, y_pred, resamples: Resamples) -> dict[str, np.ndarray]:
    """micro/macro/samples F1, subset accuracy and Hamming loss on every resample. Each resample is a
    vector of row counts, so every figure is one matrix product with per-row quantities."""
    truth = indicator(y_true, "y_true").astype(bool)
    pred = indicator(y_pred, "y_pred", truth.shape).astype(bool)
    n, n_labels = truth.shape
    cells = np.hstack([truth & pred, ~truth & pred, truth & ~pred]).astype(np.float64)   # tp | fp | fn
    tp_rows, true_rows, pred_rows = cells[:, :n_labels].sum(1), truth.sum(1), pred.sum(1)
    rows = np.column_stack([f1_from_counts(tp_rows, pred_rows - tp_rows, true_rows - tp_rows),
                            (truth == pred).all(1), (truth != pred).mean(1)])
    out = {name: np.empty(len(resamples.indices)) for name in (*HEADLINE, "hamming_loss")}
    chunk = max(1, 4_000_000 // max(1, n))                                # bounded memory on big test sets
    for start in range(0, len(resamples.indices), chunk):
        weights = _row_weights(resamples.indices[start:start + chunk], n)
        part = slice(start, start + len(weights))
        tp, fp, fn = np.split(weights @ cells, 3, axis=1)
        out["micro_f1"][part] = f1_from_counts(tp.sum(1), fp.sum(1), fn.sum(1))
        out["macro_f1"][part] = f1_from_counts(tp, fp, fn).mean(1)
        by_row = weights @ rows / n
        out["samples_f1"][part], out["subset_accuracy"][part], out["hamming_loss"][part] = by_row.T
    return out


def _whole(n: int, confidence: float) -> Resamples:
    return Resamples(np.arange(n)[None], confidence)


def summarize(y_true, y_pred, resamples: Resamples) -> dict:
    """Point estimates with intervals: {metric: value, metric_ci_low, metric_ci_high} for the headline
    figures and the Hamming loss."""
    n = len(np.asarray(y_true))
    point = resample_scores(y_true, y_pred, _whole(n, resamples.confidence))
    out = {}
    for metric, values in resample_scores(y_true, y_pred, resamples).items():
        low, high = resamples.interval(values)
        out |= {metric: float(point[metric][0]), f"{metric}_ci_low": low, f"{metric}_ci_high": high}
    return out


def paired_difference(y_true, pred_a, pred_b, resamples: Resamples, metric: str = "micro_f1") -> dict:
    """`metric` of A minus B with a paired bootstrap interval and the share of resamples where A wins."""
    a = resample_scores(y_true, pred_a, resamples)[metric]
    b = resample_scores(y_true, pred_b, resamples)[metric]
    whole = _whole(len(np.asarray(y_true)), resamples.confidence)
    point = resample_scores(y_true, pred_a, whole)[metric][0] - resample_scores(y_true, pred_b, whole)[metric][0]
    low, high = resamples.interval(a - b)
    return {"difference": float(point), "ci_low": low, "ci_high": high, "a_better_share": float((a > b).mean())}
