"""analyze: failure analysis of the trained model, and suggestions that each name a config switch.

Reads the model, reports/predictions.parquet and reports/metrics.json (from evaluate), the
validation split, the out-of-scope files and an optional challenge set. Writes
reports/failure_analysis.{md,json}, reports/analysis_metrics.json, reports/improvements.md and
reports/figures/*.png - all at the end, each file atomically, so a failure (a bad challenge
file, say) leaves no half-written report and never touches evaluate's outputs.
"""
import json
import logging
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from hfclf.analyze import failures, failure_report, improvements
from hfclf.infra import compute, tracking
from hfclf.data import dataset, probes
from hfclf.infra.cli import stage
from hfclf.infra.errors import UserError
from hfclf.infra.files import staged_files
from hfclf.infra.render import write_json
from hfclf.infra.settings import from_section
from hfclf.train.modeling import Predictor

log = logging.getLogger(__name__)


@stage("analyze")
def main(cfg: DictConfig) -> None:
    import mlflow

    a = cfg.analyze
    slicing = from_section(failures.SliceSettings, a.slices, "analyze.slices")
    limits = from_section(improvements.Limits, a.improvements, "analyze.improvements")
    processed, model_dir = Path(cfg.paths.processed), Path(cfg.paths.model_dir)
    reports, figures = Path(cfg.paths.reports), Path(cfg.paths.figures)
    frame, probs, labels = failures.load_predictions(reports / "predictions.parquet")
    metrics_path = reports / "metrics.json"
    evaluation = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.exists() else {}
    hw = compute.select(cfg.compute.device, cfg.compute.precision, cfg.compute.threads)
    predictor = Predictor.from_dir(model_dir, hw)
    if predictor.labels != labels:
        raise UserError("reports/predictions.parquet was made by another model: run `make evaluate` first.")
    # user inputs are checked before any compute
    oos_sets = {Path(f).stem: probes.read_out_of_scope(f, cfg.data.text_column, cfg.data.label_column, labels,
                                                       "analyze.out_of_scope.files") for f in a.out_of_scope.files}
    challenge = (probes.read_challenge(a.challenge.path, cfg.data.text_column, cfg.data.label_column, labels)
                 if a.challenge.path else None)
    validation = dataset.read_split(processed, "validation")

    index = {label: i for i, label in enumerate(labels)}
    y_true = frame["actual"].map(index).to_numpy()
    conf, correct = probs.max(1), probs.argmax(1) == y_true
    val_probs = predictor.predict_proba(validation["text"].tolist(), a.batch_size)
    val_correct = val_probs.argmax(1) == validation["label"].map(index).to_numpy()
    rows = failures.sample_rows(len(frame), a.robustness.max_rows, cfg.compute.seed)
    result = {
        "model": f"{predictor.meta.get('base_model') or model_dir} (fine-tuned)",
        "settings": {"flag_below": slicing.flag_below, "min_rows": slicing.min_rows, "challenge": a.challenge.path},
        "confidence": failures.confidence(conf, correct, a.calibration_bins)
        | {"temperature": failures.temperature_effect(probs, correct, val_probs,
                                                       validation["label"].map(index).to_numpy(),
                                                       predictor.meta.get("temperature"), a.calibration_bins)},
        "hard_examples": failures.hard_examples(frame, correct, a.hard_examples),
        "slices": failures.slices(frame, correct, slicing),
        "robustness": failures.robustness(
            predictor, frame["text"].iloc[rows].tolist(), y_true[rows], probs[rows].argmax(1),
            list(a.robustness.perturbations), OmegaConf.to_container(a.robustness), cfg.compute.seed, a.batch_size),
        "out_of_scope": failures.out_of_scope(
            predictor, oos_sets, val_probs.max(1), val_correct, conf, correct, a.out_of_scope.target_precision,
            list(a.out_of_scope.thresholds), a.batch_size, min_coverage=a.out_of_scope.get("min_coverage", 0.0)),
        "challenge": failures.challenge(predictor, challenge, a.batch_size, a.hard_examples) if challenge is not None
        else None,
    }
    oos_conf = result["out_of_scope"].pop("confidences")
    suggestions = improvements.suggest(result, evaluation, predictor.meta.get("augment") or {}, limits,
                                       a.out_of_scope.target_precision, predictor.meta)
    summary = summary_metrics(result)
    result["suggestions"] = [s.as_dict() for s in suggestions]

    with staged_files(reports) as staged:   # all reports and figures, or none
        figs = failure_report.plot_all(result, conf, correct, oos_conf,
                                       {key: staged(figures / name) for key, name in failure_report.FIGURES.items()})
        write_json(staged(reports / "failure_analysis.json"), result)
        write_json(staged(reports / "analysis_metrics.json"), summary)
        staged(reports / "improvements.md").write_text(improvements.markdown(suggestions, limits),
                                                       encoding="utf-8")
        staged(reports / "failure_analysis.md").write_text(failure_report.markdown(result), encoding="utf-8")

    with tracking.model_run(cfg, model_dir):
        mlflow.log_metrics({f"analysis/{k}": v for k, v in summary.items() if v is not None})
        for key, fig in figs.items():
            mlflow.log_figure(fig, f"figures/{failure_report.FIGURES[key]}")
        tracking.log_report_files([reports / "failure_analysis.md", reports / "failure_analysis.json",
                                   reports / "improvements.md"])
    log.info("ECE %.4f; worst robustness drop %.1f points; %d slices flagged; %d suggestions -> %s",
             summary["ece"], summary.get("worst_robustness_drop_points") or 0.0,
             summary["flagged_slices"], len(suggestions), reports / "improvements.md")


def summary_metrics(result: dict) -> dict:
    """The headline numbers (DVC metrics, MLflow)."""
    robust = result["robustness"]["perturbations"]
    rec = result["out_of_scope"]["recommended"]
    sets = result["out_of_scope"]["sets"]
    out = {"ece": result["confidence"]["ece"], "flagged_slices": sum(s["flagged"] for s in result["slices"]),
           "worst_robustness_drop_points": max((r["drop_points"] for r in robust), default=None),
           "recommended_threshold": rec["threshold"], "threshold_test_coverage": rec["test_coverage"],
           "out_of_scope_confident_share": float(np.mean([s["share_confidence_over_0.5"] for s in sets.values()]))
           if sets else None}
    out |= {f"robustness_drop_{r['perturbation']}": r["drop_points"] for r in robust}
    if result["challenge"]:
        out["challenge_accuracy"] = result["challenge"]["accuracy"]
    return out
