"""What people read about a multi-label evaluation: the predictions files, the per-label confusion
grid, the most frequent errors and reports/evaluation.md. It renders; multilabel.py computes."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from hfclf.analyze.failures import PROB_PREFIX
from hfclf.data import multilabel as label_sets
from hfclf.evaluate import multilabel_baselines
from hfclf.infra.files import atomic_file
from hfclf.infra.render import md_table, pyplot, save_figure

GRID_LIMIT = 24            # labels drawn in the confusion grid (the worst by F1)
GRID_COLUMNS = 6


# --------------------------------------------------------------------------- predictions

def predictions_table(texts: Sequence[str], labels: Sequence[str], y_true, y_pred) -> pd.DataFrame:
    """One row per test text: actual and predicted label sets (canonical JSON lists, as in the
    processed splits), and the labels missed and wrongly added."""
    truth, pred = np.asarray(y_true, dtype=bool), np.asarray(y_pred, dtype=bool)
    sets = {name: [label_sets.encode(row) for row in label_sets.sets_from_matrix(cells, labels)]
            for name, cells in (("actual", truth), ("predicted", pred), ("missed", truth & ~pred),
                                ("added", ~truth & pred))}
    return pd.DataFrame({"text": list(texts), **sets})


def save_predictions(path: Path, test: pd.DataFrame, labels: Sequence[str], probs: np.ndarray,
                     y_pred: np.ndarray) -> None:
    """The multi-label equivalent of analyze.failures.save_predictions (Parquet): text, actual and
    predicted label sets, the split's extra columns and one `prob:<label>` column per label."""
    frame = predictions_table(test["text"].to_numpy(), labels, label_sets.matrix(test["label"], labels),
                              y_pred).drop(columns=["missed", "added"])
    for column in test.columns:
        if column not in ("text", "label"):
            frame[column] = test[column].to_numpy()
    for i, label in enumerate(labels):
        frame[f"{PROB_PREFIX}{label}"] = probs[:, i].astype(np.float32)
    with atomic_file(path) as tmp:
        frame.to_parquet(tmp, index=False)


# --------------------------------------------------------------------------- confusion grid

def worst_first(per_label: dict) -> list[str]:
    """Labels by F1, lowest first; among equal F1 the better supported first."""
    return sorted(per_label, key=lambda label: (per_label[label]["f1"], -per_label[label]["support"]))


def plot_confusion_grid(confusion: dict, per_label: dict, path: Path, normalize: bool, title: str,
                        limit: int = GRID_LIMIT):
    """A grid of small 2x2 heatmaps (actual rows x predicted columns, no/yes), the `limit` worst-F1
    labels first; counts, or row-normalised shares. Saves the figure and returns it."""
    plt = pyplot()
    shown = worst_first(per_label)[:limit]
    columns = max(1, min(GRID_COLUMNS, len(shown)))
    rows = max(1, math.ceil(len(shown) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.1 * columns, 2.2 * rows + 0.5), squeeze=False)
    for ax in axes.ravel()[len(shown):]:
        ax.axis("off")
    for ax, label in zip(axes.ravel(), shown):
        c = confusion[label]
        values = np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]], dtype=float)
        if normalize:
            values = np.divide(values, values.sum(1, keepdims=True), out=np.zeros_like(values),
                               where=values.sum(1, keepdims=True) > 0)
        ax.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalize else max(values.max(), 1))
        for (i, j), value in np.ndenumerate(values):
            ax.text(j, i, f"{value:.2f}" if normalize else str(int(value)), ha="center", va="center", fontsize=8,
                    color="white" if value > (0.5 if normalize else values.max() / 2) else "black")
        ax.set_xticks([0, 1], ["no", "yes"], fontsize=7)
        ax.set_yticks([0, 1], ["no", "yes"], fontsize=7)
        name = label if len(label) <= 22 else label[:21] + "…"
        ax.set_title(f"{name}\nF1 {per_label[label]['f1']:.2f}", fontsize=8)
    more = f" (the {len(shown)} worst of {len(per_label)} labels)" if len(per_label) > len(shown) else ""
    fig.suptitle(f"{title}{more}: rows actual, columns predicted", fontsize=9)
    return save_figure(fig, path, dpi=110)


# --------------------------------------------------------------------------- errors

def frequent_errors(texts: Sequence[str], labels: Sequence[str], y_true, y_pred, k: int = 5,
                    examples: int = 2) -> dict[str, list[dict]]:
    """The labels most often missed (true, not predicted) and most often wrongly added (predicted,
    not true), each with its count and up to `examples` texts."""
    truth, pred = np.asarray(y_true, dtype=bool), np.asarray(y_pred, dtype=bool)
    out = {}
    for kind, cells in (("missed", truth & ~pred), ("added", ~truth & pred)):
        counts = cells.sum(0)
        out[kind] = [{"label": labels[j], "count": int(counts[j]),
                      "examples": [str(texts[i]) for i in np.flatnonzero(cells[:, j])[:examples]]}
                     for j in np.argsort(-counts, kind="stable")[:k] if counts[j] > 0]
    return out


# --------------------------------------------------------------------------- evaluation.md

def _headline_rows(scores: dict, fine_tuned: dict) -> list[tuple]:
    def ci(metric: str) -> str:
        return f"[{fine_tuned[metric + '_ci_low']:.4f}, {fine_tuned[metric + '_ci_high']:.4f}]"

    named = [("micro-F1", "micro_f1"), ("macro-F1", "macro_f1"), ("samples-F1", "samples_f1"),
             ("subset accuracy (exact set)", "subset_accuracy"), ("Hamming loss (lower is better)", "hamming_loss")]
    return [(name, scores[key], ci(key)) for name, key in named] + [
        ("micro precision / recall", f"{scores['micro_precision']:.4f} / {scores['micro_recall']:.4f}", ""),
        ("macro precision / recall", f"{scores['macro_precision']:.4f} / {scores['macro_recall']:.4f}", ""),
        ("labels per text: actual / predicted",
         f"{scores['label_cardinality_true']:.2f} / {scores['label_cardinality_predicted']:.2f}", ""),
        ("texts given no label", scores["rows_without_prediction"], ""), ("rows", scores["n"], "")]


def _threshold_note(thresholds: Sequence[float]) -> str:
    values = np.asarray(thresholds, dtype=float)
    if np.all(values == values[0]):
        return f"A label is predicted when its probability reaches {values[0]:g} (the same threshold for all)."
    return (f"A label is predicted when its probability reaches its own threshold, tuned on the validation "
            f"split (median {np.median(values):.2f}, range {values.min():.2f}-{values.max():.2f}).")


def _error_lines(errors: dict) -> list[str]:
    lines = []
    for kind, heading in (("missed", "Most often missed (true, not predicted)"),
                          ("added", "Most often wrongly added (predicted, not true)")):
        lines += [f"### {heading}", ""]
        if not errors[kind]:
            lines += ["None.", ""]
            continue
        for e in errors[kind]:
            examples = " · ".join(f"“{t[:70]}”" for t in e["examples"])
            lines.append(f"- **{e['label']}** ({e['count']}×): {examples}")
        lines.append("")
    return lines


def evaluation_markdown(scores: dict, comparison: dict, errors: dict, thresholds: Sequence[float],
                        figure: str = "figures/confusion_matrix.png") -> str:
    """reports/evaluation.md of a multi-label model: `scores` from multilabel.metrics, `comparison`
    from multilabel_baselines.compare, `errors` from frequent_errors."""
    per_label = scores["per_label"]
    threshold_of = dict(zip(per_label, thresholds))
    label_rows = [(label, threshold_of[label], per_label[label]["precision"], per_label[label]["recall"],
                   per_label[label]["f1"], per_label[label]["support"]) for label in worst_first(per_label)]
    lines = ["# Evaluation on the test split (multi-label)", "", _threshold_note(thresholds), "",
             md_table(["metric", "value", "95% CI"], _headline_rows(scores, comparison["models"]["fine-tuned"])),
             "", "Samples-F1 averages each text's own F1; a text with no true and no predicted label counts 0 "
             "(scikit-learn's zero_division=0), as does a label with neither in macro-F1.", "",
             multilabel_baselines.markdown(comparison),
             f"![per-label confusion matrices]({figure})", "",
             "## Per label (worst first)", "",
             md_table(["label", "threshold", "precision", "recall", "F1", "support"], label_rows), "",
             "## Most frequent errors", "", *_error_lines(errors)]
    return "\n".join(lines).rstrip("\n") + "\n"


def classification_report(scores: dict) -> str:
    """A plain-text per-label report (logged to MLflow), like scikit-learn's."""
    rows = [f"{label:>30} {s['precision']:9.4f} {s['recall']:9.4f} {s['f1']:9.4f} {s['support']:9d}"
            for label, s in scores["per_label"].items()]
    return "\n".join([f"{'':>30} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>9}", *rows, "",
                      f"micro-F1 {scores['micro_f1']:.4f} · macro-F1 {scores['macro_f1']:.4f} · "
                      f"samples-F1 {scores['samples_f1']:.4f} · subset accuracy {scores['subset_accuracy']:.4f} · "
                      f"Hamming loss {scores['hamming_loss']:.4f} · n {scores['n']}"]) + "\n"


def mlflow_metrics(comparison: dict, scores: dict, metric_key) -> dict[str, float]:
    """test/<metric> (+ _ci_low/_ci_high), test/margin_over_best_baseline/<metric>,
    test/per_label/f1/<label>, baseline/<name>/<metric>; `metric_key` makes a label a legal name."""
    out = {f"test/{k}": float(v) for k, v in comparison["models"]["fine-tuned"].items()}
    out |= {f"test/{k}": float(scores[k]) for k in ("micro_precision", "micro_recall", "macro_precision",
                                                     "macro_recall", "label_cardinality_true",
                                                     "label_cardinality_predicted", "rows_without_prediction")}
    out |= {f"test/margin_over_best_baseline/{m}": d["difference"] for m, d in comparison["margin"].items()}
    out |= {f"test/per_label/f1/{metric_key(label)}": s["f1"] for label, s in scores["per_label"].items()}
    out |= {f"baseline/{metric_key(name)}/{m}": s[m] for name, s in comparison["models"].items()
            if name != "fine-tuned" for m in multilabel_baselines.MARGIN_METRICS}
    return out
