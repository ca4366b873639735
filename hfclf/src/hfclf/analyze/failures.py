"""Failure analysis: where and how the model breaks. Each function returns plain dicts/lists (JSON
ready) that failure_report.py turns into Markdown and plots and improvements.py into advice.

- confidence: calibration error and reliability bins, correct vs wrong confidences
- hard examples: the most confident errors, the least confident correct predictions
- slices: accuracy by text-length bucket and by extra columns (e.g. Bitext's `tags` flags)
- robustness: accuracy on perturbed copies of the test texts (typos, casing, ...)
- out of scope: how confidently off-topic texts get a class; the abstain threshold that fixes it
- challenge: a user's hard examples with their labels
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from hfclf.train import calibration, augment
from hfclf.infra.errors import UserError
from hfclf.infra.files import atomic_file

PROB_PREFIX = "prob:"


@dataclass
class SliceSettings:
    """conf/analyze.yaml's `analyze.slices`."""
    length_buckets: int = 4                # text-length slices: word-count quantiles
    min_rows: int = 10                     # smaller slices are not reported
    max_values: int = 30                   # an extra column is sliced by value up to this many values
    flag_below: float = 0.05               # flag a slice this far (absolute) under the overall accuracy
    flag_columns: dict = field(default_factory=dict)   # column -> {letter: meaning}
CORE_COLUMNS = ("text", "actual", "predicted", "confidence")


# --------------------------------------------------------------------------- predictions file

def save_predictions(path: Path, test: pd.DataFrame, labels: list[str], probs: np.ndarray) -> None:
    """Test predictions with every class probability and the split's extra columns (Parquet)."""
    frame = pd.DataFrame({"text": test["text"].to_numpy(), "actual": test["label"].to_numpy(),
                          "predicted": [labels[i] for i in probs.argmax(1)],
                          "confidence": probs.max(1).astype(np.float32)})
    for column in test.columns:
        if column not in ("text", "label"):
            frame[column] = test[column].to_numpy()
    for i, label in enumerate(labels):
        frame[f"{PROB_PREFIX}{label}"] = probs[:, i]
    with atomic_file(path) as tmp:
        frame.to_parquet(tmp, index=False)


def load_predictions(path: Path) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    if not path.exists():
        raise UserError(f"'{path}' is missing: run `make evaluate` (or `dvc repro evaluate`) first.")
    frame = pd.read_parquet(path)
    prob_cols = [c for c in frame.columns if c.startswith(PROB_PREFIX)]
    labels = [c[len(PROB_PREFIX):] for c in prob_cols]
    return frame.drop(columns=prob_cols), frame[prob_cols].to_numpy(dtype=np.float32), labels


def extra_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in CORE_COLUMNS]


# --------------------------------------------------------------------------- confidence

def confidence(conf: np.ndarray, correct: np.ndarray, bins: int) -> dict:
    wrong = ~correct
    return {"ece": calibration.expected_calibration_error(conf, correct, bins),
            "reliability": calibration.reliability(conf, correct, bins), "rows": int(len(conf)),
            "errors": int(wrong.sum()),
            "mean_confidence_correct": float(conf[correct].mean()) if correct.any() else None,
            "mean_confidence_wrong": float(conf[wrong].mean()) if wrong.any() else None,
            "accuracy": float(correct.mean()), "mean_confidence": float(conf.mean())}


def temperature_effect(test_probs: np.ndarray, test_correct: np.ndarray, val_probs: np.ndarray,
                       val_y: np.ndarray, temperature: float | None, bins: int) -> dict:
    """ECE before and after temperature scaling, on test and on validation.

    With a saved temperature (train.calibrate), "before" undoes it. Without one, a temperature is
    fitted here on validation, so improvements.md can state what `train.calibrate=true` would do.
    """
    t = float(temperature or 1.0)
    raw_val = calibration.uncalibrate(val_probs, t)
    raw_test = calibration.uncalibrate(test_probs, t)
    fitted = t if temperature else calibration.fit_temperature(np.log(np.clip(raw_val, 1e-30, None)), val_y)
    val_logits = np.log(np.clip(raw_val, 1e-30, None))
    val = calibration.temperature_report(val_logits, val_y, fitted, bins)
    after_test = calibration.softmax(np.log(np.clip(raw_test, 1e-30, None)), fitted)
    return {"temperature": round(fitted, 4), "saved": bool(temperature),
            "validation_ece_before": val["ece_before"], "validation_ece_after": val["ece_after"],
            "test_ece_before": calibration.expected_calibration_error(raw_test.max(1), test_correct, bins),
            "test_ece_after": calibration.expected_calibration_error(after_test.max(1), test_correct, bins)}


def hard_examples(frame: pd.DataFrame, correct: np.ndarray, k: int) -> dict:
    def rows(part: pd.DataFrame) -> list[dict]:
        return [{"text": r.text, "actual": r.actual, "predicted": r.predicted, "confidence": float(r.confidence)}
                for r in part.itertuples()]
    errors = frame[~correct].sort_values("confidence", ascending=False, kind="stable")
    right = frame[correct].sort_values("confidence", ascending=True, kind="stable")
    return {"confident_errors": rows(errors.head(k)), "unsure_correct": rows(right.head(k))}


# --------------------------------------------------------------------------- slices

def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a proportion (sensible for small slices and rates near 1)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _slice(kind: str, name: str, mask: np.ndarray, correct: np.ndarray, overall: float, flag_below: float) -> dict:
    n, hits = int(mask.sum()), int(correct[mask].sum())
    accuracy = hits / n
    low, high = wilson(hits, n)
    return {"kind": kind, "slice": name, "rows": n, "accuracy": accuracy, "ci_low": low, "ci_high": high,
            "drop_points": (overall - accuracy) * 100, "flagged": accuracy < overall - flag_below}


def slices(frame: pd.DataFrame, correct: np.ndarray, settings: SliceSettings) -> list[dict]:
    """Accuracy per length bucket and per value (or flag letter) of the extra columns.

    A slice is flagged when its accuracy is more than `settings.flag_below` under the overall
    accuracy; slices with fewer than `settings.min_rows` rows are left out (too noisy to read).
    """
    overall = float(correct.mean())
    out = []
    words = frame["text"].str.split().str.len().fillna(0).to_numpy()
    buckets = pd.qcut(words, settings.length_buckets, duplicates="drop")
    for bucket in buckets.categories:
        mask = np.asarray(buckets == bucket)
        low, high = int(math.floor(bucket.left)) + 1, int(bucket.right)
        name = f"{low}-{high} words" if low < high else f"{high} words"
        if mask.sum() >= settings.min_rows:
            out.append(_slice("length", name, mask, correct, overall, settings.flag_below))
    flag_columns = dict(settings.flag_columns or {})
    for column in extra_columns(frame):
        values = frame[column].fillna("").astype(str)
        if column in flag_columns:
            legend = dict(flag_columns[column] or {})
            letters = sorted(set("".join(values)))
            for letter in letters:
                mask = values.str.contains(letter, regex=False).to_numpy()
                if mask.sum() >= settings.min_rows:
                    label = f"{column} ∋ {letter}" + (f" ({legend[letter]})" if letter in legend else "")
                    out.append(_slice(column, label, mask, correct, overall, settings.flag_below))
        elif 1 < values.nunique() <= settings.max_values:
            for value in sorted(values.unique()):
                mask = (values == value).to_numpy()
                if mask.sum() >= settings.min_rows:
                    out.append(_slice(column, f"{column} = {value}", mask, correct, overall, settings.flag_below))
    return out


# --------------------------------------------------------------------------- robustness

def perturbed(predictor, texts: Sequence[str], clean_pred: np.ndarray, names: Sequence[str], rates: dict,
              seed: int, batch_size: int, decide: Callable[[np.ndarray], np.ndarray]):
    """Per perturbation: (name, the perturbed texts, the rows whose token ids changed, the predictions).

    Only texts whose *token ids* changed go through the model again (`decide` turns probabilities
    into predictions); the others keep their clean prediction, which is exactly what the model would
    return. Shared by robustness() and the multi-label analysis (analyze/multilabel.py)."""
    from hfclf.train import batching

    augment.check_names(names, "analyze.robustness.perturbations")
    clean_ids = batching.tokenize(predictor.tokenizer, texts, predictor.max_length)
    for offset, name in enumerate(names):
        changed = augment.apply(name, texts, seed + offset, float(rates.get(name, 0.0)))
        ids = batching.tokenize(predictor.tokenizer, changed, predictor.max_length)
        redo = np.flatnonzero([a != b for a, b in zip(ids, clean_ids)])
        pred = clean_pred.copy()
        if len(redo):
            pred[redo] = decide(predictor.predict_proba([changed[i] for i in redo], batch_size))
        yield name, changed, redo, pred


def robustness(predictor, texts: Sequence[str], y_true: np.ndarray, clean_pred: np.ndarray,
               names: Sequence[str], rates: dict, seed: int, batch_size: int) -> dict:
    """Accuracy on perturbed copies of `texts` and the drop from clean accuracy, per perturbation.

    Only texts whose *token ids* changed go through the model again (an uncased tokenizer makes
    casing changes free; punctuation removal leaves many texts as they were); the others keep
    their clean prediction, which is exactly what the model would return.
    """
    clean_correct = clean_pred == y_true
    clean = float(clean_correct.mean())
    rows = []
    examples = {}
    for name, changed, redo, pred in perturbed(predictor, texts, clean_pred, names, rates, seed, batch_size,
                                               lambda probs: probs.argmax(1)):
        correct = pred == y_true
        altered = np.array([a != b for a, b in zip(changed, texts)])
        rows.append({"perturbation": name, "accuracy": float(correct.mean()), "clean_accuracy": clean,
                     "drop_points": (clean - float(correct.mean())) * 100,
                     "texts_changed": float(altered.mean()), "inputs_changed": float(len(redo) / max(1, len(texts))),
                     "broken": int((clean_correct & ~correct).sum()), "fixed": int((~clean_correct & correct).sum())})
        broken = np.flatnonzero(clean_correct & ~correct)[:3]
        examples[name] = [{"original": texts[i], "perturbed": changed[i], "predicted": predictor.labels[pred[i]],
                           "actual": predictor.labels[y_true[i]]} for i in broken]
    return {"rows": len(texts), "clean_accuracy": clean, "perturbations": rows, "examples": examples}


def sample_rows(n: int, limit: int | None, seed: int) -> np.ndarray:
    if not limit or n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


# --------------------------------------------------------------------------- out of scope

def out_of_scope(predictor, sets: dict[str, list[str]], val_conf: np.ndarray, val_correct: np.ndarray,
                 test_conf: np.ndarray, test_correct: np.ndarray, target_precision: float,
                 table_thresholds: Sequence[float], batch_size: int, examples: int = 5,
                 min_coverage: float = 0.0) -> dict:
    """How confidently off-topic texts get a class, and the abstain threshold chosen on validation.

    The threshold is the lowest one whose kept validation predictions reach `target_precision`;
    it is then checked on the test split (coverage, precision) and on every out-of-scope set
    (share rejected, i.e. answered UNKNOWN). A threshold that keeps less than `min_coverage` of the
    in-scope validation rows is not recommended: the recommendation becomes the highest threshold
    that keeps `min_coverage` (rule "min_coverage"), with the precision it reaches.
    """
    has_unknown = "UNKNOWN" in predictor.labels
    choice = calibration.choose_threshold(val_conf, val_correct, target_precision)
    rule = "target_precision"
    if choice.threshold is None or choice.coverage < min_coverage:
        capped = coverage_threshold(val_conf, min_coverage)
        kept = calibration.apply_threshold(val_conf, val_correct, capped)
        choice = calibration.ThresholdChoice(capped, kept["precision"], kept["coverage"], target_precision,
                                             choice.baseline_precision, choice.rows)
        rule = "min_coverage"
    saved = predictor.threshold
    scored = {}
    for name, texts in sets.items():
        probs = predictor.predict_proba(texts, batch_size)
        conf = probs.max(1)
        pred = [predictor.labels[i] for i in probs.argmax(1)]
        top = pd.Series(pred).value_counts().head(5)
        order = np.argsort(-conf)[:examples]
        scored[name] = {
            "texts": len(texts), "conf": conf, "pred": pred,
            "mean_confidence": float(conf.mean()), "median_confidence": float(np.median(conf)),
            "share_confidence_over_0.5": float((conf > 0.5).mean()),
            "share_confidence_over_0.9": float((conf > 0.9).mean()),
            "share_predicted_unknown": float(np.mean([p == "UNKNOWN" for p in pred])) if has_unknown else None,
            "top_predicted": {k: int(v) for k, v in top.items()},
            "most_confident": [{"text": texts[i], "predicted": pred[i], "confidence": float(conf[i])} for i in order],
        }

    def rejected(threshold: float | None) -> dict[str, float]:
        return {name: float(np.mean([(c < (threshold or 0.0)) or p == "UNKNOWN" for c, p in zip(s["conf"], s["pred"])]))
                for name, s in scored.items()}

    thresholds = sorted({float(t) for t in table_thresholds} | ({choice.threshold} if choice.threshold else set())
                        | ({float(saved)} if saved else set()))
    table = []
    for t in [0.0, *thresholds]:
        val = calibration.apply_threshold(val_conf, val_correct, t)
        test = calibration.apply_threshold(test_conf, test_correct, t)
        table.append({"threshold": t, "validation_coverage": val["coverage"], "validation_precision": val["precision"],
                      "test_coverage": test["coverage"], "test_precision": test["precision"],
                      "out_of_scope_rejected": rejected(t),
                      "recommended": choice.threshold is not None and t == choice.threshold, "saved": t == saved})
    recommended_test = calibration.apply_threshold(test_conf, test_correct, choice.threshold)
    recommended_rejected = rejected(choice.threshold) if choice.threshold is not None else None
    confidences = {name: s.pop("conf") for name, s in scored.items()}
    for s in scored.values():
        s.pop("pred")
    return {"model_has_unknown_class": has_unknown, "saved_threshold": saved, "confidences": confidences,
            "recommended": choice.as_dict() | {"rule": rule, "min_coverage": min_coverage,
                                               "test_coverage": recommended_test["coverage"],
                                               "test_precision": recommended_test["precision"],
                                               "out_of_scope_rejected": recommended_rejected},
            "sets": scored, "thresholds": table}


def coverage_threshold(confidence: Sequence[float], min_coverage: float) -> float | None:
    """The highest threshold that still keeps at least `min_coverage` of the rows (None: keep all)."""
    confidence = np.sort(np.asarray(confidence, dtype=float))[::-1]
    if not len(confidence) or min_coverage <= 0:
        return None
    keep = int(np.ceil(min(1.0, min_coverage) * len(confidence)))
    threshold = float(confidence[keep - 1])
    return threshold if threshold > float(confidence[-1]) else None   # None when it would keep every row


# --------------------------------------------------------------------------- challenge set

def challenge(predictor, frame: pd.DataFrame, batch_size: int, k: int) -> dict:
    from hfclf.evaluate.metrics import classification_metrics

    index = {label: i for i, label in enumerate(predictor.labels)}
    probs = predictor.predict_proba(frame["text"].tolist(), batch_size)
    y_true = frame["label"].map(index).to_numpy()
    y_pred = probs.argmax(1)
    scores = classification_metrics(y_true, y_pred, predictor.labels)
    wrong = np.flatnonzero(y_pred != y_true)
    wrong = wrong[np.argsort(-probs.max(1)[wrong])][:k]
    return {"rows": int(len(frame)), "accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"],
            "errors": [{"text": frame["text"].iloc[i], "actual": frame["label"].iloc[i],
                        "predicted": predictor.labels[y_pred[i]], "confidence": float(probs[i].max())}
                       for i in wrong]}
