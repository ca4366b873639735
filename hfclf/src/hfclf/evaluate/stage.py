"""evaluate: score the trained model on the untouched test split.

Outputs: reports/metrics.json (DVC metrics, with bootstrap intervals and the baselines),
reports/per_class.json, reports/evaluation.md, reports/predictions.csv (DVC confusion plot),
reports/predictions.parquet (every class probability, for analyze),
reports/figures/confusion_matrix{,_normalized}.png. Everything is also logged into the model's MLflow run.
"""
import logging
import re
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from hfclf.analyze import failures
from hfclf.evaluate import baselines, bootstrap, metrics
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
