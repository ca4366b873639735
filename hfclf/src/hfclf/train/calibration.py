"""Confidence: how well it matches accuracy (expected calibration error, reliability bins), the
temperature that makes it match better (`train.calibrate`: fitted on validation, saved in
classifier.json as `temperature`, applied by modeling.Predictor), and the abstain threshold that
buys a target precision, with the coverage it costs.

`choose_threshold` is used twice: by `analyze` to recommend a threshold, and by `train` when
`train.abstain.target_precision` is set, to save one with the model (classifier.json), so that
prediction returns UNKNOWN below it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from hfclf.infra.errors import UserError


def reliability(confidence: Sequence[float], correct: Sequence[bool], bins: int = 15) -> list[dict]:
    """Equal-width confidence bins: rows, mean confidence and accuracy of each non-empty bin."""
    confidence, correct = np.asarray(confidence, dtype=float), np.asarray(correct, dtype=bool)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    rows = []
    for b in range(bins):
        inside = which == b
        if inside.any():
            rows.append({"low": float(edges[b]), "high": float(edges[b + 1]), "n": int(inside.sum()),
                         "confidence": float(confidence[inside].mean()), "accuracy": float(correct[inside].mean())})
    return rows


def expected_calibration_error(confidence: Sequence[float], correct: Sequence[bool], bins: int = 15) -> float:
    """Mean |accuracy - confidence| over the bins, weighted by their share of rows (0 = perfect)."""
    rows = reliability(confidence, correct, bins)
    total = sum(r["n"] for r in rows)
    return float(sum(r["n"] / total * abs(r["accuracy"] - r["confidence"]) for r in rows)) if total else 0.0


@dataclass
class ThresholdChoice:
    threshold: float | None       # None: the target precision is out of reach at any threshold
    precision: float              # precision of the predictions kept (confidence >= threshold)
    coverage: float               # share of rows kept (the rest would be answered UNKNOWN)
    target_precision: float
    baseline_precision: float     # precision with no threshold (coverage 1)
    rows: int

    def as_dict(self) -> dict:
        return asdict(self)


def choose_threshold(confidence: Sequence[float], correct: Sequence[bool], target_precision: float,
                     min_rows: int = 1) -> ThresholdChoice:
    """The lowest confidence threshold whose kept predictions reach `target_precision`.

    Lowest, because every step up costs coverage. Ties are kept together (a threshold never
    splits rows with the same confidence). Returns threshold None when even the most confident
    `min_rows` predictions fall short.
    """
    if not 0 < target_precision <= 1:
        raise UserError(f"target precision must be in (0, 1], not {target_precision}.")
    confidence, correct = np.asarray(confidence, dtype=float), np.asarray(correct, dtype=bool)
    n = len(confidence)
    if n == 0:
        raise UserError("cannot choose an abstain threshold on an empty split.")
    order = np.argsort(-confidence, kind="stable")
    conf_sorted, correct_sorted = confidence[order], correct[order]
    kept = np.arange(1, n + 1)
    precision = np.cumsum(correct_sorted) / kept
    # only cut where the next row has a strictly lower confidence
    boundary = np.append(conf_sorted[1:] < conf_sorted[:-1], True)
    ok = np.flatnonzero(boundary & (precision >= target_precision) & (kept >= min_rows))
    base = float(correct.mean())
    if len(ok) == 0:
        return ThresholdChoice(None, float(precision[boundary].max()), 0.0, target_precision, base, n)
    best = ok[-1]                                   # the most rows kept that still meet the target
    threshold = float(conf_sorted[best]) if best < n - 1 else 0.0
    return ThresholdChoice(threshold, float(precision[best]), float(kept[best] / n), target_precision, base, n)


def apply_threshold(confidence: Sequence[float], correct: Sequence[bool], threshold: float | None) -> dict:
    """Coverage and precision of the kept predictions at a given threshold (None keeps all)."""
    confidence, correct = np.asarray(confidence, dtype=float), np.asarray(correct, dtype=bool)
    kept = confidence >= (threshold or 0.0)
    return {"coverage": float(kept.mean()) if len(kept) else 0.0,
            "precision": float(correct[kept].mean()) if kept.any() else float("nan")}


def fit_abstain_threshold(predictor, texts: Sequence[str], y: Sequence[int], target_precision: float,
                          batch_size: int = 256) -> ThresholdChoice:
    """The threshold for `train.abstain.target_precision`, chosen on the validation split."""
    return abstain_threshold_from(predictor.predict_proba(list(texts), batch_size), y, target_precision)


def abstain_threshold_from(probs: np.ndarray, y: Sequence[int], target_precision: float) -> ThresholdChoice:
    """The same, from the model's (temperature-scaled) class probabilities on the validation split."""
    probs = np.asarray(probs)
    return choose_threshold(probs.max(1), probs.argmax(1) == np.asarray(y), target_precision)


# --------------------------------------------------------------------------- temperature scaling

def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def _nll(logits: np.ndarray, y: np.ndarray, temperature: float) -> float:
    p = softmax(logits, temperature)[np.arange(len(y)), y]
    return float(-np.log(np.clip(p, 1e-12, None)).mean())


def fit_temperature(logits: Sequence[Sequence[float]], y: Sequence[int], low: float = 0.05,
                    high: float = 20.0) -> float:
    """The temperature T minimising the negative log-likelihood of softmax(logits / T) on `y`.

    One parameter, so it never changes which class is predicted (accuracy and macro-F1 stay), only
    how confident the model says it is. Golden-section search on log T (the NLL is unimodal in it).
    """
    logits, y = np.asarray(logits, dtype=np.float64), np.asarray(y, dtype=int)
    if len(y) == 0:
        raise UserError("cannot fit a temperature on an empty split.")
    a, b = np.log(low), np.log(high)
    ratio = (np.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = _nll(logits, y, np.exp(c)), _nll(logits, y, np.exp(d))
    for _ in range(60):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = _nll(logits, y, np.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = _nll(logits, y, np.exp(d))
    return float(np.exp((a + b) / 2))


def temperature_report(logits: np.ndarray, y: np.ndarray, temperature: float, bins: int = 15) -> dict:
    """ECE and NLL before (T = 1) and after scaling, on the rows the temperature was fitted on."""
    logits, y = np.asarray(logits, dtype=np.float64), np.asarray(y, dtype=int)
    before, after = softmax(logits), softmax(logits, temperature)
    correct = before.argmax(1) == y
    return {"temperature": round(float(temperature), 4), "fitted_on": "validation", "rows": int(len(y)),
            "ece_before": expected_calibration_error(before.max(1), correct, bins),
            "ece_after": expected_calibration_error(after.max(1), correct, bins),
            "nll_before": _nll(logits, y, 1.0), "nll_after": _nll(logits, y, temperature)}


def fit_temperature_on(predictor, texts: Sequence[str], y: Sequence[int], batch_size: int = 256) -> dict:
    """`train.calibrate`: fit on the validation split with the uncalibrated model; the report."""
    return fit_temperature_to(predictor.predict_logits(list(texts), batch_size), y)


def fit_temperature_to(logits: np.ndarray, y: Sequence[int]) -> dict:
    """The same, from the model's raw logits on the validation split (the train stage has them from
    the training loop's best validation pass)."""
    y = np.asarray(y)
    return temperature_report(logits, y, fit_temperature(logits, y))


def uncalibrate(probs: np.ndarray, temperature: float | None) -> np.ndarray:
    """The model's raw probabilities from ones scaled by `temperature` (softmax(T * log p))."""
    if not temperature or temperature == 1:
        return np.asarray(probs)
    return softmax(np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-30, None)), 1.0 / temperature)
