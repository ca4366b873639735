"""The model card's sections for a multi-label model (classifier.json `task: multi_label`): a text
gets every label whose sigmoid score reaches that label's own threshold, tuned on validation.

card.py writes the sections both tasks share (intended use, training details, limitations,
reproducibility) and asks `sections` for the rest: the summary, the label table with the
thresholds, the usage snippet, the test metrics (micro/macro/samples F1, subset accuracy, Hamming
loss, with their bootstrap intervals), the per-label table and the most frequent errors. It reads
evaluate's multi-label reports: metrics.json, per_class.json and predictions.csv (label sets as
JSON lists in `actual` / `predicted`).
"""
from __future__ import annotations

import json
from collections import Counter


from hfclf.infra.render import md_table, pct
from hfclf.ship import bundle

# The test metrics the card states, in order: (metrics.json key, name in the card, what it measures).
HEADLINE = (
    ("micro_f1", "micro-F1", "every (text, label) decision pooled: the headline figure"),
    ("macro_f1", "macro-F1", "the mean of the labels' F1: a rare label counts as much as a common one"),
    ("samples_f1", "samples-F1", "the mean over texts of each text's F1 between its true and predicted labels"),
    ("subset_accuracy", "subset accuracy", "texts whose predicted label set is exactly the true one"),
    ("hamming_loss", "Hamming loss", "the share of wrong (text, label) decisions: lower is better"),
)
# Columns of the baselines table: metrics.json keys and their names (evaluate's margin metrics).
BASELINE_COLUMNS = (("micro_f1", "macro_f1"), ("micro-F1", "macro-F1"))
MOST_FREQUENT = 5


def sections(inputs, settings: dict, repo_id: str, provenance: str, baselines_table: str | None) -> dict:
    """The task-specific parts of card.body (see there) for a multi-label model."""
    return {"summary": summary(inputs, provenance), "labels": labels_section(inputs),
            "intended": intended_note(), "snippet": bundle.multi_label_snippet(repo_id), "units": "labels",
            "best_epoch": best_epoch(inputs.training), "evaluation": evaluation(inputs, baselines_table),
            "errors": errors(inputs)}


def _interval(metrics: dict, key: str) -> str:
    low, high = metrics.get(f"{key}_ci_low"), metrics.get(f"{key}_ci_high")
    return f"[{float(low):.4f}, {float(high):.4f}]" if low is not None and high is not None else "-"


def summary(inputs, provenance: str) -> list[str]:
    metrics, rows = inputs.metrics, inputs.profile.get("rows", {})
    return [f"A multi-label text classifier over {len(inputs.meta['labels'])} labels - a text gets every label "
            f"that applies, so several or none - {provenance}. On the held-out test split "
            f"({metrics.get('n', rows.get('test', '?'))} texts) it reaches **micro-F1 {pct(metrics['micro_f1'])}** "
            f"and **macro-F1 {pct(metrics['macro_f1'])}**, and gives exactly the right label set to "
            f"{pct(metrics.get('subset_accuracy'))} of the texts (subset accuracy).", ""]


def thresholds_note(meta: dict) -> str:
    """How the per-label thresholds decide, and how they were chosen (classifier.json `threshold_tuning`)."""
    tuning = meta.get("threshold_tuning") or {}
    before, after = tuning.get("micro_f1_default"), tuning.get("micro_f1_tuned")
    gain = (f" On validation they lift micro-F1 from {float(before):.4f} (every threshold at 0.5) to "
            f"{float(after):.4f}." if before is not None and after is not None else "")
    return ("Each label has its own decision threshold (`thresholds` in `classifier.json`, in label-id order): "
            "the model scores every label on its own (a sigmoid, not a softmax over labels) and a label applies "
            "when its score reaches its threshold. The thresholds were tuned on the validation split, each "
            f"maximising its label's F1; a label without validation examples keeps 0.5.{gain} There is no "
            "abstain threshold: a text none of whose scores reaches its threshold gets an empty label set.")


def labels_section(inputs) -> list[str]:
    labels, thresholds = inputs.meta["labels"], inputs.meta.get("thresholds") or [0.5] * len(inputs.meta["labels"])
    per_label = inputs.per_class
    rows = [(i, label, float(threshold), float(per_label.get(label, {}).get("f1", float("nan"))),
             per_label.get(label, {}).get("support", 0))
            for i, (label, threshold) in enumerate(zip(labels, thresholds))]
    return ["## Labels", "", md_table(["id", "label", "threshold", "test F1", "test support"], rows), "",
            thresholds_note(inputs.meta), ""]


def intended_note() -> list[str]:
    return ["This is a **multi-label** model: it is meant for texts that can carry several of its labels at once. "
            "Each label is decided independently against its own threshold, so a text may get several labels, "
            "or none when no label fits well enough - treat an empty set as \"needs a person\".", ""]


def best_epoch(training: dict) -> str:
    score = training.get("best_val_micro_f1", training.get("best_val_score", 0))
    return (f"- best epoch {training.get('best_epoch', '?')} by validation micro-F1 ({float(score):.4f}); "
            "the per-label thresholds were tuned afterwards on the same validation split")


def evaluation(inputs, baselines_table: str | None) -> list[str]:
    metrics = inputs.metrics
    rows = [(name, float(metrics[key]), _interval(metrics, key)) for key, name, _ in HEADLINE if key in metrics]
    out = ["## Evaluation", "",
           "On the test split, never seen during training, model selection or threshold tuning "
           "(95% bootstrap intervals):", "",
           md_table(["metric", "value", "95% CI"], rows), "",
           *[f"- {name}: {meaning}" for key, name, meaning in HEADLINE if key in metrics]]
    if {"micro_precision", "micro_recall"} <= set(metrics):
        out.append(f"- micro precision {float(metrics['micro_precision']):.4f} · micro recall "
                   f"{float(metrics['micro_recall']):.4f}")
    if {"label_cardinality_true", "label_cardinality_predicted"} <= set(metrics):
        out.append(f"- labels per text: {float(metrics['label_cardinality_true']):.2f} true, "
                   f"{float(metrics['label_cardinality_predicted']):.2f} predicted")
    if baselines_table:
        out += ["", "### Baselines (same split)", "", baselines_table]
    return out + ["", *per_label_table(inputs.per_class), "### Per-label confusion matrices", "",
                  f"![per-label confusion matrices, row-normalised]({bundle.CONFUSION_IMAGE})", "",
                  "Each small matrix is one label: rows are the truth (no / yes), columns the prediction.", ""]


def per_label_table(per_class: dict) -> list[str]:
    """Worst F1 first (ties: the better supported first)."""
    worst = sorted(per_class.items(), key=lambda kv: (kv[1].get("f1", 0), -kv[1].get("support", 0)))
    rows = [(label, float(s["threshold"]) if "threshold" in s else "-", float(s["precision"]), float(s["recall"]),
             float(s["f1"]), int(s["support"])) for label, s in worst]
    return ["### Per label", "", md_table(["label", "threshold", "precision", "recall", "F1", "support"], rows), ""]


def error_counts(predictions) -> tuple[Counter, Counter]:
    """(labels missed: true, not predicted; labels wrongly added: predicted, not true) over the test texts."""
    missed, added = Counter(), Counter()
    for actual, predicted in zip(predictions["actual"], predictions["predicted"]):
        true, said = set(json.loads(actual)), set(json.loads(predicted))
        missed.update(true - said)
        added.update(said - true)
    return missed, added


def errors(inputs) -> list[str]:
    """The labels most often missed and wrongly added on the test split, and the multi-label limits (the
    model's own limit last, as card._limitations expects)."""
    missed, added = error_counts(inputs.predictions)
    out = []
    for counts, heading in ((missed, "Labels most often missed (true, not predicted) on the test split:"),
                            (added, "Labels most often wrongly added (predicted, not true) on the test split:")):
        if counts:
            out += [heading, "", *[f"- {label}: {n}×" for label, n in counts.most_common(MOST_FREQUENT)], ""]
    n = len(inputs.meta["labels"])
    return out + [
        "- Labels are decided independently: the model does not know which labels exclude each other, so it "
        "can predict a combination never seen in training.",
        "- The thresholds fit the validation split's mix of labels; data with a different mix may need other "
        "thresholds (`thresholds` in `classifier.json`).",
        f"- It knows only these {n} labels: a text about anything else gets none of them (an empty set) or, "
        "wrongly, some of them; there is no abstain threshold beyond the per-label ones."]
