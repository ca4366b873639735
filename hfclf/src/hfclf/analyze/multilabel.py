"""Failure analysis of a multi-label model (data.task=multi_label): the counterpart of failures.py
for label sets. Each function returns plain dicts/lists (JSON ready) that multilabel_report.py
turns into Markdown and plots and improvements.py into advice.

A row's labels are decided one by one: label j is predicted when its sigmoid probability reaches
its threshold (tuned on validation by train). So the units here are *label decisions* (rows x
labels, each right or wrong) and *rows* (their predicted set exactly right, or not):

- calibration: each label's probability against its 0/1 truth (reliability, ECE), and all decisions pooled
- hard examples: the rows with the most wrong decisions (labels missed, labels wrongly added)
- slices: F1 per label (support, interval, flagged under the micro average); exact-set accuracy by
  text length and by the extra columns
- robustness: micro-F1 on perturbed copies of the test texts, and how many predicted sets change
- out of scope: off-topic texts should get no label at all - the share that does, the labels given
- challenge: a user's hard examples with their label sets
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from hfclf.analyze import failures
from hfclf.data import label_formats, multilabel as label_sets
from hfclf.infra.errors import UserError
from hfclf.train import calibration

EXAMPLES = 3   # robustness / out-of-scope examples kept per perturbation or file


# --------------------------------------------------------------------------- counting

def decide(probs: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """Boolean rows x labels decisions: a label is predicted when its probability reaches its threshold."""
    return np.asarray(probs) >= np.asarray(thresholds, dtype=np.float32)


def _f1(tp, fp, fn) -> np.ndarray:
    """2TP / (2TP + FP + FN), 0 where nothing was true or predicted (scikit-learn's zero_division=0)."""
    tp, denominator = np.asarray(tp, dtype=float), 2 * np.asarray(tp, dtype=float) + fp + fn
    return np.divide(2 * tp, denominator, out=np.zeros(np.shape(denominator)), where=denominator > 0)


def counts(truth: np.ndarray, pred: np.ndarray, axis: int | None = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True positives, false positives and false negatives per label (axis 0), per row (1) or in all (None)."""
    truth, pred = np.asarray(truth, dtype=bool), np.asarray(pred, dtype=bool)
    return (truth & pred).sum(axis), (~truth & pred).sum(axis), (truth & ~pred).sum(axis)


def micro_f1(truth: np.ndarray, pred: np.ndarray) -> float:
    return float(_f1(*counts(truth, pred, None)))


def macro_f1(truth: np.ndarray, pred: np.ndarray) -> float:
    return float(_f1(*counts(truth, pred, 0)).mean())


def row_f1(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Each row's F1 between its true and predicted set; 1 when both are empty (no label was right)."""
    tp, fp, fn = counts(truth, pred, 1)
    return np.where(tp + fp + fn == 0, 1.0, _f1(tp, fp, fn))


def _names(row: np.ndarray, labels: Sequence[str]) -> list[str]:
    return [labels[j] for j in np.flatnonzero(row)]


# --------------------------------------------------------------------------- calibration

def calibration_report(probs: np.ndarray, truth: np.ndarray, labels: Sequence[str], bins: int,
                       worst: int = 5) -> dict:
    """Each label's sigmoid probability as a forecast of its 0/1 truth: reliability bins (mean
    probability vs share of rows that carry the label) and the expected calibration error (ECE),
    per label and over all label decisions pooled; `worst` labels by ECE."""
    probs, truth = np.asarray(probs, dtype=float), np.asarray(truth, dtype=bool)
    per_label = [{"label": label, "support": int(truth[:, j].sum()),
                  "ece": calibration.expected_calibration_error(probs[:, j], truth[:, j], bins),
                  "mean_probability": float(probs[:, j].mean()), "positive_rate": float(truth[:, j].mean())}
                 for j, label in enumerate(labels)]
    ranked = sorted(per_label, key=lambda r: (-r["ece"], r["label"]))
    return {"ece": calibration.expected_calibration_error(probs.ravel(), truth.ravel(), bins),
            "reliability": calibration.reliability(probs.ravel(), truth.ravel(), bins),
            "decisions": int(truth.size), "rows": int(len(truth)),
            "mean_probability": float(probs.mean()), "positive_rate": float(truth.mean()),
            "per_label": per_label, "worst_labels": [r["label"] for r in ranked[:worst]]}


# --------------------------------------------------------------------------- hard examples

def hard_examples(frame: pd.DataFrame, probs: np.ndarray, truth: np.ndarray, pred: np.ndarray,
                  labels: Sequence[str], thresholds: Sequence[float], k: int) -> dict:
    """`most_wrong`: rows with the most wrong label decisions (then the lowest row F1, then the
    farthest from their thresholds); `unsure_correct`: exactly right rows whose closest decision
    was nearest its threshold."""
    distance = np.abs(np.asarray(probs, dtype=float) - np.asarray(thresholds, dtype=float))
    wrong = truth != pred
    n_wrong, f1 = wrong.sum(1), row_f1(truth, pred)
    severity = (distance * wrong).sum(1)
    order = np.lexsort((-severity, f1, -n_wrong))
    worst = [i for i in order if n_wrong[i] > 0][:k]
    closest = distance.min(1)
    right = np.flatnonzero(n_wrong == 0)
    unsure = right[np.argsort(closest[right], kind="stable")][:k]
    texts = frame["text"].tolist()
    return {
        "most_wrong": [{"text": texts[i], "actual": _names(truth[i], labels), "predicted": _names(pred[i], labels),
                        "missed": _names(truth[i] & ~pred[i], labels), "added": _names(~truth[i] & pred[i], labels),
                        "wrong_decisions": int(n_wrong[i]), "f1": float(f1[i])} for i in worst],
        "unsure_correct": [{"text": texts[i], "labels": _names(pred[i], labels),
                            "closest_label": labels[int(distance[i].argmin())], "margin": float(closest[i])}
                           for i in unsure]}


# --------------------------------------------------------------------------- slices

def label_slices(truth: np.ndarray, pred: np.ndarray, labels: Sequence[str], flag_below: float,
                 min_rows: int) -> list[dict]:
    """F1 per label with its support and a 95% Wilson interval. F1 = TP / (TP + (FP + FN) / 2) is read
    as a proportion of TP + (FP + FN) / 2 trials (an approximation: wide for rare labels, as it
    should be). A label is flagged when its F1 is more than `flag_below` under the micro-F1;
    `low_support` marks labels with fewer than `min_rows` test rows (their F1 is noise)."""
    overall = micro_f1(truth, pred)
    tp, fp, fn = counts(truth, pred, 0)
    f1 = _f1(tp, fp, fn)
    out = []
    for j, label in enumerate(labels):
        trials = tp[j] + (fp[j] + fn[j]) / 2
        low, high = failures.wilson(int(tp[j]), trials) if trials else (0.0, 1.0)
        out.append({"kind": "label", "slice": label, "rows": int(tp[j] + fn[j]), "f1": float(f1[j]),
                    "precision": float(tp[j] / (tp[j] + fp[j])) if tp[j] + fp[j] else 0.0,
                    "recall": float(tp[j] / (tp[j] + fn[j])) if tp[j] + fn[j] else 0.0,
                    "tp": int(tp[j]), "fp": int(fp[j]), "fn": int(fn[j]), "ci_low": low, "ci_high": high,
                    "drop_points": (overall - float(f1[j])) * 100, "flagged": bool(f1[j] < overall - flag_below),
                    "low_support": bool(tp[j] + fn[j] < min_rows)})
    return out


# --------------------------------------------------------------------------- robustness

def robustness(predictor, texts: Sequence[str], truth: np.ndarray, clean_pred: np.ndarray, names: Sequence[str],
               rates: dict, seed: int, batch_size: int) -> dict:
    """Micro-F1 on perturbed copies of `texts`, the drop from clean, and the share of rows whose
    predicted set changes. As in failures.robustness, only texts whose token ids changed are
    predicted again; the others keep their clean decisions."""
    labels, thresholds = predictor.labels, predictor.thresholds
    clean = micro_f1(truth, clean_pred)
    clean_exact = (truth == clean_pred).all(1)
    rows, examples = [], {}
    for name, changed, redo, pred in failures.perturbed(predictor, texts, clean_pred, names, rates, seed, batch_size,
                                                        lambda probs: decide(probs, thresholds)):
        exact = (truth == pred).all(1)
        score = micro_f1(truth, pred)
        rows.append({"perturbation": name, "micro_f1": score, "clean_micro_f1": clean, "drop_points": (clean - score) * 100,
                     "sets_changed": float((pred != clean_pred).any(1).mean()) if len(texts) else 0.0,
                     "texts_changed": float(np.mean([a != b for a, b in zip(changed, texts)])) if len(texts) else 0.0,
                     "inputs_changed": float(len(redo) / max(1, len(texts))),
                     "broken": int((clean_exact & ~exact).sum()), "fixed": int((~clean_exact & exact).sum())})
        examples[name] = [{"original": texts[i], "perturbed": changed[i], "predicted": _names(pred[i], labels),
                           "actual": _names(truth[i], labels)} for i in np.flatnonzero(clean_exact & ~exact)[:EXAMPLES]]
    return {"rows": len(texts), "clean_micro_f1": clean, "perturbations": rows, "examples": examples}


# --------------------------------------------------------------------------- out of scope

def margins(probs: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """Each row's highest probability minus that label's threshold: >= 0 means at least one label."""
    return (np.asarray(probs, dtype=float) - np.asarray(thresholds, dtype=float)).max(1)


def out_of_scope(predictor, sets: dict[str, list[str]], test_pred: np.ndarray, test_truth: np.ndarray,
                 batch_size: int) -> dict:
    """Off-topic texts should get the empty label set. Per file: the share given no label (good), the
    mean number of labels given, the labels given most and the texts given the most labels. For
    contrast, the same share on the in-scope test rows (predicted, and true). `margins` (popped by
    the stage for the plot): each text's highest probability minus its label's threshold."""
    labels, thresholds = predictor.labels, predictor.thresholds
    scored, spread = {}, {}
    for name, texts in sets.items():
        probs = predictor.predict_proba(texts, batch_size)
        pred = decide(probs, thresholds)
        given = pred.sum(1)
        top = pd.Series(pred.sum(0), index=list(labels)).sort_values(ascending=False, kind="stable")
        order = np.lexsort((-probs.max(1), -given))[:EXAMPLES]
        scored[name] = {"texts": len(texts), "share_no_label": float((given == 0).mean()),
                        "mean_labels": float(given.mean()),
                        "top_labels": {label: int(n) for label, n in top.items() if n > 0},
                        "most_labelled": [{"text": texts[i], "labels": _names(pred[i], labels),
                                           "max_probability": float(probs[i].max())} for i in order if given[i]]}
        spread[name] = margins(probs, thresholds)
    return {"sets": scored, "test_share_no_label": float((test_pred.sum(1) == 0).mean()),
            "test_share_truly_no_label": float((test_truth.sum(1) == 0).mean()), "margins": spread}


# --------------------------------------------------------------------------- challenge set

def read_challenge(path: str | Path, text_column: str, label_column: str, labels: Sequence[str],
                   spec: label_formats.LabelSpec, key: str = "analyze.challenge.path") -> pd.DataFrame:
    """A multi-label challenge set as columns text, label (canonical label sets): its labels are read
    like the training data's (data.label_format / label_delimiter / label_columns); every label must
    be known and every row must carry at least one."""
    from hfclf.data.dataset import read_file

    path = Path(path)
    if not path.exists():
        raise UserError(f"challenge file '{path}' does not exist. Create it or fix {key}.")
    frame = read_file(path)
    text = next((c for c in ("text", text_column) if c in frame.columns), None)
    label = next((c for c in ("label", label_column) if c in frame.columns), None)
    if text is None or (label is None and not spec.columns):
        raise UserError(f"challenge file '{path}' needs a text column ('text' or {text_column!r}) and a label column "
                        f"('label' or {label_column!r}); its columns are: {', '.join(map(str, frame.columns))}.")
    frame = frame[frame[text].notna() & frame[text].astype(str).str.strip().ne("")].reset_index(drop=True)
    if frame.empty:
        raise UserError(f"challenge file '{path}' has no rows with text.")
    parsed = label_formats.parse_label_sets(frame, label or label_column, spec.columns, spec.format, spec.delimiter,
                                         str(path), "all")
    unknown = sorted(set(label_sets.all_labels(parsed)) - set(labels))
    if unknown:
        raise UserError(f"challenge file '{path}' has label(s) the model does not know: {unknown[:10]}. "
                        f"Known labels: {', '.join(labels)}. Fix the labels (they are case-sensitive).")
    return pd.DataFrame({"text": frame[text].astype(str), "label": parsed.to_numpy()})


def challenge(predictor, frame: pd.DataFrame, batch_size: int, k: int) -> dict:
    """Micro/macro-F1 and exact-set accuracy on the challenge set, and its rows with the most wrong decisions."""
    labels = predictor.labels
    probs = predictor.predict_proba(frame["text"].tolist(), batch_size)
    truth, pred = label_sets.matrix(frame["label"], labels).astype(bool), decide(probs, predictor.thresholds)
    hard = hard_examples(frame, probs, truth, pred, labels, predictor.thresholds, k)
    return {"rows": int(len(frame)), "micro_f1": micro_f1(truth, pred), "macro_f1": macro_f1(truth, pred),
            "subset_accuracy": float((truth == pred).all(1).mean()), "errors": hard["most_wrong"]}


# --------------------------------------------------------------------------- validation effects

def validation_effects(probs: np.ndarray, truth: np.ndarray, labels: Sequence[str], thresholds: Sequence[float]) -> dict:
    """What improvements.md quotes as measured on validation: micro-F1, each label's F1 and support, the
    micro-F1 over the other labels were each label removed (prepare.rare_labels=drop), and the no-label
    rows (off-topic texts from data.out_of_scope) with the share of them given no label."""
    pred = decide(probs, thresholds)
    truth = np.asarray(truth, dtype=bool)
    tp, fp, fn = counts(truth, pred, 0)
    f1 = _f1(tp, fp, fn)
    every = np.array([tp.sum(), fp.sum(), fn.sum()])
    without = {label: float(_f1(*(every - [tp[j], fp[j], fn[j]]))) for j, label in enumerate(labels)}
    empty = truth.sum(1) == 0
    return {"rows": int(len(truth)), "micro_f1": micro_f1(truth, pred), "no_label_rows": int(empty.sum()),
            "no_label_right": float((pred[empty].sum(1) == 0).mean()) if empty.any() else None,
            "per_label": {label: {"f1": float(f1[j]), "support": int(tp[j] + fn[j])} for j, label in enumerate(labels)},
            "micro_f1_without": without}
