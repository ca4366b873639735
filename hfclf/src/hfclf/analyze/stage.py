"""analyze: failure analysis of the trained model, and suggestions that each name a config switch.

Reads the model, reports/predictions.parquet and reports/metrics.json (from evaluate), the
validation split, the out-of-scope files and an optional challenge set. Writes
reports/failure_analysis.{md,json}, reports/analysis_metrics.json, reports/improvements.md and
reports/figures/*.png - all at the end, each file atomically, so a failure (a bad challenge
file, say) leaves no half-written report and never touches evaluate's outputs.

A multi-label model (classifier.json's task) writes the same files with multi-label contents
(analyze/multilabel.py: per-label calibration and F1, label sets missed and added, micro-F1 under
perturbations, off-topic texts given no label): `analyze_multi_label`.
"""
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from hfclf.analyze import failures, failure_report, improvements, multilabel, multilabel_report
from hfclf.data import dataset, probes
from hfclf.data import label_formats, multilabel as label_sets
from hfclf.infra import compute, tracking
from hfclf.infra.cli import stage
from hfclf.infra.errors import UserError
from hfclf.infra.files import staged_files
from hfclf.infra.render import write_json
from hfclf.infra.settings import from_section
from hfclf.train.modeling import Predictor

log = logging.getLogger(__name__)


@dataclass
class Analysis:
    """What one branch computed; `plot` draws every figure of failure_report.FIGURES to the paths given."""
    result: dict
    summary: dict
    suggestions: list
    plot: Callable[[dict[str, Path]], dict]
    markdown: str
    notes: list[str] = field(default_factory=list)   # improvements.md's findings with no switch


@dataclass
class Inputs:
    """The inputs both branches share."""
    predictor: Predictor
    frame: pd.DataFrame          # reports/predictions.parquet without the probability columns
    probs: np.ndarray            # its probability columns (softmax, or per-label sigmoid)
    labels: list[str]
    evaluation: dict             # reports/metrics.json
    slicing: failures.SliceSettings
    limits: improvements.Limits


@stage("analyze")
def main(cfg: DictConfig) -> None:
    import mlflow

    a = cfg.analyze
    slicing = from_section(failures.SliceSettings, a.slices, "analyze.slices")
    limits = from_section(improvements.Limits, a.improvements, "analyze.improvements")
    model_dir, reports, figures = Path(cfg.paths.model_dir), Path(cfg.paths.reports), Path(cfg.paths.figures)
    frame, probs, labels = failures.load_predictions(reports / "predictions.parquet")
    metrics_path = reports / "metrics.json"
    evaluation = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.exists() else {}
    hw = compute.select(cfg.compute.device, cfg.compute.precision, cfg.compute.threads)
    predictor = Predictor.from_dir(model_dir, hw)
    if predictor.labels != labels:
        raise UserError("reports/predictions.parquet was made by another model: run `make evaluate` first.")
    inputs = Inputs(predictor, frame, probs, labels, evaluation, slicing, limits)
    analysis = (analyze_multi_label if predictor.multi_label else analyze_single_label)(cfg, inputs)
    analysis.result["suggestions"] = [s.as_dict() for s in analysis.suggestions]

    with staged_files(reports) as staged:   # all reports and figures, or none
        figs = analysis.plot({key: staged(figures / name) for key, name in failure_report.FIGURES.items()})
        write_json(staged(reports / "failure_analysis.json"), analysis.result)
        write_json(staged(reports / "analysis_metrics.json"), analysis.summary)
        advice = improvements.markdown(analysis.suggestions, inputs.limits, analysis.notes)
        staged(reports / "improvements.md").write_text(advice, encoding="utf-8")
        staged(reports / "failure_analysis.md").write_text(analysis.markdown, encoding="utf-8")

    with tracking.model_run(cfg, model_dir):
        mlflow.log_metrics({f"analysis/{k}": v for k, v in analysis.summary.items() if v is not None})
        for key, fig in figs.items():
            mlflow.log_figure(fig, f"figures/{failure_report.FIGURES[key]}")
        tracking.log_report_files([reports / "failure_analysis.md", reports / "failure_analysis.json",
                                   reports / "improvements.md"])
    log.info("ECE %.4f; worst robustness drop %.1f points; %d slices flagged; %d suggestions -> %s",
             analysis.summary["ece"], analysis.summary.get("worst_robustness_drop_points") or 0.0,
             analysis.summary["flagged_slices"], len(analysis.suggestions), reports / "improvements.md")


def _out_of_scope_files(cfg: DictConfig, labels: list[str], multi_label: bool) -> dict[str, list[str]]:
    return {Path(f).stem: probes.read_out_of_scope(f, cfg.data.text_column, cfg.data.label_column, labels,
                                                   "analyze.out_of_scope.files", multi_label)
            for f in cfg.analyze.out_of_scope.files}


# --------------------------------------------------------------------------- single-label

def analyze_single_label(cfg: DictConfig, inputs: Inputs) -> Analysis:
    a, predictor, frame, probs, labels = cfg.analyze, inputs.predictor, inputs.frame, inputs.probs, inputs.labels
    slicing, model_dir = inputs.slicing, Path(cfg.paths.model_dir)
    # user inputs are checked before any compute
    oos_sets = _out_of_scope_files(cfg, labels, False)
    challenge = (probes.read_challenge(a.challenge.path, cfg.data.text_column, cfg.data.label_column, labels)
                 if a.challenge.path else None)
    validation = dataset.read_split(Path(cfg.paths.processed), "validation")

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
    suggestions = improvements.suggest(result, inputs.evaluation, predictor.meta.get("augment") or {},
                                       inputs.limits, a.out_of_scope.target_precision, predictor.meta)
    return Analysis(result, summary_metrics(result), suggestions,
                    lambda paths: failure_report.plot_all(result, conf, correct, oos_conf, paths),
                    failure_report.markdown(result))


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


# --------------------------------------------------------------------------- multi-label

def analyze_multi_label(cfg: DictConfig, inputs: Inputs) -> Analysis:
    a, predictor, frame, probs, labels = cfg.analyze, inputs.predictor, inputs.frame, inputs.probs, inputs.labels
    processed, slicing = Path(cfg.paths.processed), inputs.slicing
    if not label_sets.is_multi_label(dataset.read_labels(processed)):
        raise UserError("the model is multi-label but data/processed is single-label (labels.json has no "
                        "\"task\": \"multi_label\"). Re-run `make prepare`, `make train` and `make evaluate`.")
    # user inputs are checked before any compute
    oos_sets = _out_of_scope_files(cfg, labels, True)
    challenge = (multilabel.read_challenge(a.challenge.path, cfg.data.text_column, cfg.data.label_column, labels,
                                           label_formats.LabelSpec.from_config(cfg.data))
                 if a.challenge.path else None)
    validation, train = dataset.read_split(processed, "validation"), dataset.read_split(processed, "train")

    thresholds = predictor.thresholds
    truth = _label_sets(frame["actual"], labels)
    pred = multilabel.decide(probs, thresholds)
    val_probs = predictor.predict_proba(validation["text"].tolist(), a.batch_size)
    rows = failures.sample_rows(len(frame), a.robustness.max_rows, cfg.compute.seed)
    result = {
        "task": label_sets.MULTI,
        "model": f"{predictor.meta.get('base_model') or cfg.paths.model_dir} (fine-tuned)",
        "settings": {"flag_below": slicing.flag_below, "min_rows": slicing.min_rows, "challenge": a.challenge.path},
        "scores": {"rows": int(len(frame)), "micro_f1": multilabel.micro_f1(truth, pred),
                   "macro_f1": multilabel.macro_f1(truth, pred),
                   "subset_accuracy": float((truth == pred).all(1).mean())},
        "thresholds": {"per_label": dict(zip(labels, map(float, thresholds))),
                       "tuning": predictor.meta.get("threshold_tuning"),
                       "test_micro_f1_at_0.5": multilabel.micro_f1(truth, multilabel.decide(probs, 0.5))},
        "label_rows": label_sets.label_support(pd.concat([train["label"], validation["label"], frame["actual"]]),
                                               labels),
        "calibration": multilabel.calibration_report(probs, truth, labels, a.calibration_bins),
        "hard_examples": multilabel.hard_examples(frame, probs, truth, pred, labels, thresholds, a.hard_examples),
        "label_slices": multilabel.label_slices(truth, pred, labels, slicing.flag_below, slicing.min_rows),
        "slices": failures.slices(frame, (truth == pred).all(1), slicing),
        "robustness": multilabel.robustness(
            predictor, frame["text"].iloc[rows].tolist(), truth[rows], pred[rows], list(a.robustness.perturbations),
            OmegaConf.to_container(a.robustness), cfg.compute.seed, a.batch_size),
        "out_of_scope": multilabel.out_of_scope(predictor, oos_sets, pred, truth, a.batch_size),
        "validation": multilabel.validation_effects(val_probs, label_sets.matrix(validation["label"], labels),
                                                    labels, thresholds),
        "challenge": multilabel.challenge(predictor, challenge, a.batch_size, a.hard_examples)
        if challenge is not None else None,
    }
    oos_margins = result["out_of_scope"].pop("margins")
    test_margins = multilabel.margins(probs, thresholds)
    suggestions = improvements.suggest_multi_label(result, inputs.evaluation, predictor.meta.get("augment") or {},
                                                   inputs.limits, predictor.meta)
    return Analysis(result, multi_label_summary(result), suggestions,
                    lambda paths: multilabel_report.plot_all(result, probs, truth, pred, test_margins, oos_margins,
                                                             paths),
                    multilabel_report.markdown(result), improvements.multi_label_notes(result, inputs.limits))


def _label_sets(actual: pd.Series, labels: list[str]) -> np.ndarray:
    """The test rows' true label sets (rows x labels), or a UserError when evaluate wrote single labels."""
    try:
        return label_sets.matrix(actual, labels).astype(bool)
    except (json.JSONDecodeError, TypeError):
        raise UserError("reports/predictions.parquet holds single labels, not label sets: it was written for a "
                        "single-label model. Run `make evaluate` with this model first.") from None


def multi_label_summary(result: dict) -> dict:
    """The multi-label headline numbers (DVC metrics, MLflow); `ece` pools every label decision."""
    robust = result["robustness"]["perturbations"]
    sets = result["out_of_scope"]["sets"]
    calib = result["calibration"]
    out = {"ece": calib["ece"], "worst_label_ece": max((r["ece"] for r in calib["per_label"]), default=None),
           "flagged_slices": sum(s["flagged"] for s in result["label_slices"] + result["slices"]),
           "flagged_labels": sum(s["flagged"] for s in result["label_slices"]),
           "worst_robustness_drop_points": max((r["drop_points"] for r in robust), default=None),
           "out_of_scope_no_label_share": float(np.mean([s["share_no_label"] for s in sets.values()]))
           if sets else None,
           "test_no_label_share": result["out_of_scope"]["test_share_no_label"]}
    out |= {f"robustness_drop_{r['perturbation']}": r["drop_points"] for r in robust}
    if result["challenge"]:
        out["challenge_micro_f1"] = result["challenge"]["micro_f1"]
    return out
