"""evaluate: score the trained model on the untouched test split.

Outputs: reports/metrics.json (DVC metrics, with bootstrap intervals and the baselines),
reports/per_class.json, reports/evaluation.md, reports/predictions.csv (DVC confusion plot),
reports/predictions.parquet (every class probability, for analyze),
reports/figures/confusion_matrix{,_normalized}.png. Everything is also logged into the model's MLflow run.
A multi-label model (classifier.json's task) writes the same files with multi-label contents:
`evaluate_multi_label`.
"""
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from hfclf.analyze import failures
from hfclf.data import multilabel as label_sets
from hfclf.evaluate import (baselines, bootstrap, metrics, multilabel, multilabel_baselines, multilabel_metrics,
                            multilabel_report)
from hfclf.infra import compute, files, tracking
from hfclf.data import dataset
from hfclf.infra.cli import stage
from hfclf.infra.errors import UserError
from hfclf.train.modeling import Predictor
from hfclf.infra.render import md_table, plot_confusion, write_json

log = logging.getLogger(__name__)


def metric_key(label: str) -> str:
    """MLflow metric names allow letters, digits and _-./ only."""
    return re.sub(r"[^\w\-./ ]", "_", label)


@stage("evaluate")
def main(cfg: DictConfig) -> None:
    import mlflow

    processed, model_dir = Path(cfg.paths.processed), Path(cfg.paths.model_dir)
    reports, figures = Path(cfg.paths.reports), Path(cfg.paths.figures)
    test = dataset.read_split(processed, "test")
    hw = compute.select(cfg.compute.device, cfg.compute.precision, cfg.compute.threads)
    predictor = Predictor.from_dir(model_dir, hw)
    if label_sets.is_multi_label(predictor.meta):
        return evaluate_multi_label(cfg, predictor, test, hw)
    labels = predictor.labels
    unknown = sorted(set(test["label"]) - set(labels))
    if unknown:
        raise UserError(f"the test split has labels the model was not trained on: {unknown}. "
                        "Re-run `make prepare` and `make train` so both see the same labels.")
    probs = predictor.predict_proba(test["text"].tolist(), cfg.evaluate.batch_size, progress=True)
    y_true = test["label"].map({label: i for i, label in enumerate(labels)}).to_numpy()
    y_pred = probs.argmax(1)
    scores = metrics.classification_metrics(y_true, y_pred, labels)
    matrix = metrics.confusion(y_true, y_pred, len(labels))
    train = dataset.read_split(processed, "train")
    resamples = bootstrap.Resamples.draw(len(y_true), cfg.evaluate.bootstrap.samples, cfg.compute.seed,
                                         cfg.evaluate.bootstrap.confidence)
    results = baselines.run(list(cfg.evaluate.baselines.run), train["text"].tolist(),
                            train["label"].map({label: i for i, label in enumerate(labels)}).to_numpy(),
                            test["text"].tolist(), cfg.evaluate.baselines,
                            predictor.meta.get("base_model") or cfg.model.name, hw, predictor.max_length,
                            cfg.compute.seed)
    comparison = baselines.compare(y_true, y_pred, results, len(labels), resamples)

    headline = {k: scores[k] for k in ("accuracy", "macro_f1", "weighted_f1", "n")} | {
        k: v for k, v in comparison["models"]["fine-tuned"].items() if "_ci_" in k} | {
        "baselines": {name: {"accuracy": s["accuracy"], "macro_f1": s["macro_f1"]}
                      for name, s in comparison["models"].items() if name != "fine-tuned"},
        "best_baseline": comparison["best_baseline"],
        "margin_over_best_baseline": {m: d["difference"] for m, d in comparison["margin"].items()}}
    write_json(reports / "metrics.json", headline)
    write_json(reports / "per_class.json", scores["per_class"])
    predictions = pd.DataFrame({"text": test["text"], "actual": test["label"],
                                "predicted": [labels[i] for i in y_pred], "confidence": probs.max(1).round(4)})
    files.write_csv(predictions, reports / "predictions.csv")   # formula-safe cells
    failures.save_predictions(reports / "predictions.parquet", test, labels, probs)
    counts_fig = plot_confusion(matrix, labels, figures / "confusion_matrix.png", False, "Confusion matrix (counts)")
    norm_fig = plot_confusion(matrix, labels, figures / "confusion_matrix_normalized.png", True,
                              "Confusion matrix (row-normalised: recall per class)")
    confused = metrics.top_confusions(matrix, labels)
    files.write_text(reports / "evaluation.md", evaluation_markdown(scores, confused, predictions, comparison))

    with tracking.model_run(cfg, model_dir):
        # grouped names (the UI sections them by the part before '/'); scalars, logged once at step 0
        mlflow.log_metrics(mlflow_metrics(headline, comparison, scores))
        label_info = dataset.read_labels(processed)
        tracking.log_datasets({"test": test}, label_info.get("fingerprint"), label_info.get("source"))
        mlflow.log_figure(counts_fig, "figures/confusion_matrix.png")
        mlflow.log_figure(norm_fig, "figures/confusion_matrix_normalized.png")
        table = pd.DataFrame(matrix, index=labels, columns=labels).rename_axis("actual").reset_index()
        mlflow.log_table(table, "tables/confusion_matrix.json")
        per_class = pd.DataFrame([{"label": label, **s} for label, s in scores["per_class"].items()])
        mlflow.log_table(per_class, "tables/per_class.json")
        mlflow.log_text(classification_report(scores), "reports/classification_report.txt")
        tracking.log_report_files([reports / "evaluation.md", reports / "metrics.json", reports / "per_class.json"])
    log.info("test accuracy %.4f, macro-F1 %.4f on %d rows", scores["accuracy"], scores["macro_f1"], scores["n"])


def mlflow_metrics(headline: dict, comparison: dict, scores: dict) -> dict[str, float]:
    """The test results under MLflow's grouped names: test/accuracy, test/macro_f1, test/macro_f1_ci_low ...,
    test/margin_over_best_baseline/<metric>, test/per_class/f1/<label>, baseline/<name>/<metric>."""
    out = {f"test/{k}": v for k, v in headline.items() if isinstance(v, float)}
    out |= {f"test/margin_over_best_baseline/{m}": d["difference"] for m, d in comparison["margin"].items()}
    out |= {f"test/per_class/f1/{metric_key(label)}": s["f1"] for label, s in scores["per_class"].items()}
    out |= {f"baseline/{metric_key(name)}/{m}": s[m] for name, s in comparison["models"].items()
            if name != "fine-tuned" for m in ("accuracy", "macro_f1")}
    return out


def classification_report(scores: dict) -> str:
    rows = [f"{label:>30} {s['precision']:9.4f} {s['recall']:9.4f} {s['f1']:9.4f} {s['support']:9d}"
            for label, s in scores["per_class"].items()]
    return "\n".join([f"{'':>30} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>9}", *rows, "",
                      f"accuracy {scores['accuracy']:.4f} · macro-F1 {scores['macro_f1']:.4f} · "
                      f"weighted-F1 {scores['weighted_f1']:.4f} · n {scores['n']}"]) + "\n"


def evaluation_markdown(scores: dict, confused: list, predictions: pd.DataFrame, comparison: dict) -> str:
    per_class = [(label, s["precision"], s["recall"], s["f1"], s["support"])
                 for label, s in sorted(scores["per_class"].items(), key=lambda kv: kv[1]["f1"])]
    ci = comparison["models"]["fine-tuned"]
    lines = ["# Evaluation on the test split", "",
             md_table(["metric", "value", "95% CI"], [
                 ("accuracy", scores["accuracy"], f"[{ci['accuracy_ci_low']:.4f}, {ci['accuracy_ci_high']:.4f}]"),
                 ("macro-F1", scores["macro_f1"], f"[{ci['macro_f1_ci_low']:.4f}, {ci['macro_f1_ci_high']:.4f}]"),
                 ("weighted-F1", scores["weighted_f1"], ""), ("rows", scores["n"], "")]), "",
             baselines.markdown(comparison),
             "![confusion matrix](figures/confusion_matrix_normalized.png)", "",
             "## Per class (worst first)", "",
             md_table(["label", "precision", "recall", "F1", "support"], per_class), "",
             "## Most confused pairs", ""]
    if not confused:
        lines.append("No errors on the test split.")
    for actual, predicted, count in confused:
        wrong = predictions[(predictions["actual"] == actual) & (predictions["predicted"] == predicted)]
        examples = " · ".join(f"“{t[:70]}”" for t in wrong["text"].head(2))
        lines.append(f"- **{actual} → {predicted}** ({count}×): {examples}")
    return "\n".join(lines) + "\n"


def model_thresholds(predictor: Predictor) -> np.ndarray:
    """The multi-label model's per-label thresholds (tuned on validation by train); 0.5 without them."""
    thresholds = getattr(predictor, "thresholds", None)
    if thresholds is None:
        thresholds = predictor.meta.get("thresholds")
    if thresholds is None:
        log.warning("the model carries no per-label thresholds: every label is decided at 0.5")
        return np.full(len(predictor.labels), 0.5)
    if isinstance(thresholds, dict):                                    # {label: threshold}
        missing = [label for label in predictor.labels if label not in thresholds]
        if missing:
            raise UserError(f"the model has no threshold for label(s) {missing}: re-run `make train`.")
        thresholds = [thresholds[label] for label in predictor.labels]
    thresholds = np.asarray(thresholds, dtype=float)
    if thresholds.shape != (len(predictor.labels),):
        raise UserError(f"the model has {len(predictor.labels)} labels but {thresholds.size} thresholds: "
                        "its classifier.json is inconsistent; re-run `make train`.")
    return thresholds


def check_multi_label_data(label_info: dict, test: pd.DataFrame, labels: list[str]) -> None:
    """A UserError unless the prepared data is multi-label with only labels the model knows."""
    if not label_sets.is_multi_label(label_info):
        raise UserError("the model is multi-label but data/processed is single-label (labels.json has no "
                        "\"task\": \"multi_label\"). Re-run `make prepare` and `make train` so both agree.")
    unknown = sorted(set(label_sets.all_labels(test["label"])) - set(labels))
    if unknown:
        raise UserError(f"the test split has labels the model was not trained on: {unknown}. "
                        "Re-run `make prepare` and `make train` so both see the same labels.")


def multi_label_headline(scores: dict, comparison: dict) -> dict:
    """reports/metrics.json of a multi-label model: task, the test metrics with their intervals, the
    baselines' micro/macro-F1, the best baseline and the fine-tune's margin over it (points)."""
    return {"task": label_sets.MULTI} | {k: v for k, v in scores.items() if k != "per_label"} | {
        k: v for k, v in comparison["models"]["fine-tuned"].items() if "_ci_" in k} | {
        "baselines": {name: {m: s[m] for m in multilabel_baselines.MARGIN_METRICS}
                      for name, s in comparison["models"].items() if name != "fine-tuned"},
        "best_baseline": comparison["best_baseline"],
        "margin_over_best_baseline": {m: d["difference"] for m, d in comparison["margin"].items()}}


def evaluate_multi_label(cfg: DictConfig, predictor: Predictor, test: pd.DataFrame, hw: compute.Compute | None) -> None:
    """The multi-label branch of `main`: the same files and MLflow layout, multi-label contents
    (micro/macro/samples F1, subset accuracy, Hamming loss, per-label scores and 2x2 confusions)."""
    import mlflow

    processed, model_dir = Path(cfg.paths.processed), Path(cfg.paths.model_dir)
    reports, figures = Path(cfg.paths.reports), Path(cfg.paths.figures)
    label_info, labels = dataset.read_labels(processed), predictor.labels
    check_multi_label_data(label_info, test, labels)
    texts = test["text"].tolist()
    probs = predictor.predict_proba(texts, cfg.evaluate.batch_size, progress=True)
    thresholds = model_thresholds(predictor)
    y_true = label_sets.matrix(test["label"], labels).astype(np.int8)
    y_pred = multilabel_metrics.decide(probs, thresholds)
    scores = multilabel.metrics(y_true, y_pred, labels)
    confusion = multilabel.confusion_matrices(y_true, y_pred, labels)
    train = dataset.read_split(processed, "train")
    resamples = bootstrap.Resamples.draw(len(y_true), cfg.evaluate.bootstrap.samples, cfg.compute.seed,
                                         cfg.evaluate.bootstrap.confidence)
    results = multilabel_baselines.run(list(cfg.evaluate.baselines.run), train["text"].tolist(),
                                       label_sets.matrix(train["label"], labels), texts, cfg.evaluate.baselines,
                                       predictor.meta.get("base_model") or cfg.model.name, hw,
                                       predictor.max_length, cfg.compute.seed)
    comparison = multilabel_baselines.compare(y_true, y_pred, results, resamples)

    headline = multi_label_headline(scores, comparison)
    per_label = {label: s | {"threshold": float(t)} | confusion[label]
                 for (label, s), t in zip(scores["per_label"].items(), thresholds)}
    write_json(reports / "metrics.json", headline)
    write_json(reports / "per_class.json", per_label)
    files.write_csv(multilabel_report.predictions_table(texts, labels, y_true, y_pred), reports / "predictions.csv")
    multilabel_report.save_predictions(reports / "predictions.parquet", test, labels, probs, y_pred)
    counts_fig = multilabel_report.plot_confusion_grid(confusion, scores["per_label"], figures / "confusion_matrix.png",
                                                       False, "Per-label confusion (counts)")
    norm_fig = multilabel_report.plot_confusion_grid(confusion, scores["per_label"],
                                                     figures / "confusion_matrix_normalized.png", True,
                                                     "Per-label confusion (row-normalised)")
    errors = multilabel_report.frequent_errors(texts, labels, y_true, y_pred)
    files.write_text(reports / "evaluation.md",
                     multilabel_report.evaluation_markdown(scores, comparison, errors, thresholds))

    with tracking.model_run(cfg, model_dir):
        mlflow.log_metrics(multilabel_report.mlflow_metrics(comparison, scores, metric_key))
        tracking.log_datasets({"test": test}, label_info.get("fingerprint"), label_info.get("source"))
        mlflow.log_figure(counts_fig, "figures/confusion_matrix.png")
        mlflow.log_figure(norm_fig, "figures/confusion_matrix_normalized.png")
        table = pd.DataFrame([{"label": label, **confusion[label]} for label in labels])
        mlflow.log_table(table, "tables/confusion_matrix.json")
        mlflow.log_table(pd.DataFrame([{"label": label, **s} for label, s in per_label.items()]),
                         "tables/per_class.json")
        mlflow.log_text(multilabel_report.classification_report(scores), "reports/classification_report.txt")
        tracking.log_report_files([reports / "evaluation.md", reports / "metrics.json", reports / "per_class.json"])
    log.info("test micro-F1 %.4f, macro-F1 %.4f, subset accuracy %.4f on %d rows", scores["micro_f1"],
             scores["macro_f1"], scores["subset_accuracy"], scores["n"])
