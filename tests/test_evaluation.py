"""Honest evaluation on the Bitext sample, in the project whose `dvc repro` already ran
(`trained_project`): the fine-tune against three baselines with confidence intervals, and a
failure analysis with calibration, slices, robustness and out-of-scope behaviour, with plots."""
from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from conftest import run

pytestmark = pytest.mark.slow
BASELINES = ("majority", "tfidf_logreg", "frozen_embeddings")


def test_evaluation_shows_the_fine_tune_against_three_baselines_with_intervals(trained_project):
    reports = trained_project / "reports"
    metrics = json.loads((reports / "metrics.json").read_text())
    assert metrics["accuracy_ci_low"] <= metrics["accuracy"] <= metrics["accuracy_ci_high"]
    assert metrics["macro_f1_ci_low"] <= metrics["macro_f1"] <= metrics["macro_f1_ci_high"]
    assert set(metrics["baselines"]) == set(BASELINES)
    assert metrics["baselines"]["majority"]["accuracy"] < 0.5                 # the floor
    assert metrics["baselines"]["tfidf_logreg"]["accuracy"] > 0.9             # Bitext is keyword-easy
    assert metrics["best_baseline"] in BASELINES and "macro_f1" in metrics["margin_over_best_baseline"]

    report = (reports / "evaluation.md").read_text()
    assert "## Fine-tune against baselines" in report
    interval = r"\d\.\d{4} \[\d\.\d{4}, \d\.\d{4}\]"
    for name in ("fine-tuned", *BASELINES):
        row = next(line for line in report.splitlines() if line.startswith("|") and name in line)
        assert len(re.findall(interval, row)) == 2, row                       # accuracy and macro-F1 with CIs
    assert re.search(r"margin over the best baseline \(`\w+`\) is \*\*[+-]\d+\.\d\d macro-F1 points\*\*", report)

    predictions = pd.read_parquet(reports / "predictions.parquet")
    probs = predictions[[c for c in predictions.columns if c.startswith("prob:")]]
    assert probs.shape == (metrics["n"], 11)
    assert (probs.sum(axis=1) - 1).abs().max() < 1e-3


def test_failure_analysis_shows_calibration_slices_robustness_and_out_of_scope(trained_project):
    reports = trained_project / "reports"
    report = (reports / "failure_analysis.md").read_text()
    for section in ("## Confidence and calibration", "Expected calibration error", "### Most confident errors",
                    "## Slices", "tags ∋ Z (errors and typos)", "words |", "## Robustness", "| typos |",
                    "| casing |", "| punctuation |", "| word_dropout |", "## Out of scope", "### Abstain threshold"):
        assert section in report, section
    for figure in re.findall(r"!\[[^\]]*\]\((figures/[\w.]+\.png)\)", report) or pytest.fail("no plots"):
        assert (reports / figure).stat().st_size > 5000, figure
    assert {"figures/reliability_diagram.png", "figures/robustness.png", "figures/out_of_scope.png",
            "figures/slices.png", "figures/confidence_histogram.png"} <= set(re.findall(r"\((figures/[\w.]+)\)", report))

    analysis = json.loads((reports / "failure_analysis.json").read_text())
    assert 0 <= analysis["confidence"]["ece"] < 0.2
    default = analysis["out_of_scope"]["sets"]["default"]
    assert default["texts"] >= 50 and 0 < default["mean_confidence"] < 1
    recommended = analysis["out_of_scope"]["recommended"]
    assert recommended["threshold"] is not None and 0 < recommended["test_coverage"] <= 1
    drops = {r["perturbation"]: r["drop_points"] for r in analysis["robustness"]["perturbations"]}
    assert set(drops) == {"typos", "casing", "punctuation", "word_dropout"} and drops["typos"] > 0

    improvements = (reports / "improvements.md").read_text()
    switches = re.findall(r"switch: `([\w.]+)=", improvements)
    assert len(switches) == len(analysis["suggestions"])
    assert all(s.split(".")[0] in {"train", "data", "model", "analyze", "compute"} for s in switches)
    shown = run(["dvc", "metrics", "show", "--json"], trained_project).stdout
    assert "ece" in shown and "robustness_drop_typos" in shown


def test_analysis_is_in_the_models_mlflow_run(trained_project):
    from mlflow.tracking import MlflowClient

    run_id = json.loads((trained_project / "models/model/mlflow_run.json").read_text())["run_id"]
    client = MlflowClient(tracking_uri=f"sqlite:///{trained_project / 'mlflow.db'}")
    logged = client.get_run(run_id).data.metrics
    assert {"analysis/ece", "baseline/tfidf_logreg/accuracy", "test/accuracy_ci_low"} <= set(logged)
    figures = {a.path for a in client.list_artifacts(run_id, "figures")}
    assert {"figures/reliability_diagram.png", "figures/robustness.png"} <= figures


def test_a_bad_challenge_file_fails_clearly_and_destroys_nothing(trained_project):
    reports = trained_project / "reports"
    kept = {name: (reports / name).read_bytes() for name in ("metrics.json", "evaluation.md", "failure_analysis.md")}
    (trained_project / "data/challenge/hard.csv").write_text("text,label\nrefnd my mony,REFUNDS\n")
    try:
        result = run(["hfclf", "analyze",
                      "analyze.challenge.path=data/challenge/hard.csv"], trained_project, check=False)
    finally:
        (trained_project / "data/challenge/hard.csv").unlink()
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "label(s) the model does not know: ['REFUNDS']" in result.stderr
    assert {name: (reports / name).read_bytes() for name in kept} == kept
