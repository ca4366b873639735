"""Pre-flight on the Bitext sample with the real MiniLM: the profile, review, smoke and plan reports
that `dvc repro` wrote, the same reports in the model's MLflow run, and why the default split is
`group` (a stratified split of this data leaks, and review says so)."""
from __future__ import annotations

import json
import shutil

import pytest

from conftest import run

pytestmark = pytest.mark.slow


def read(project, name):
    return json.loads((project / "reports" / name).read_text())


def test_preflight_reports_are_written_and_honest(trained_project):
    profile = read(trained_project, "data_profile.json")
    tokens = profile["text_tokens"]
    assert tokens["tokenizer"] == "sentence-transformers/all-MiniLM-L6-v2" and tokens["tokenized_rows"] == 4514
    assert tokens["p50"] < tokens["p99"] < 64 and tokens["model_max_positions"] == 512
    for figure in ("class_counts.png", "text_lengths.png"):
        assert (trained_project / "reports/figures" / figure).exists()

    review = read(trained_project, "review.json")
    assert review["verdict"] == "pass" and review["leakage"]["max_fraction"] == 0.0   # group split by default
    assert review["imbalance"]["ratio"] > 5 and review["personal_data"]["rows"] > 0     # real findings, reported
    assert (trained_project / "reports/review.md").exists()

    smoke = read(trained_project, "smoke.json")
    assert smoke["passed"] and len(smoke["checks"]) == 7 and smoke["parameters"] > 20_000_000
    plan = read(trained_project, "training_plan.json")
    assert plan["model"]["suggested_max_length"] == 32 and plan["model"]["truncated_share"] == 0.0
    # model.max_length=auto on short texts: the 128 floor, one clock, no choice for the budget to make
    assert plan["model"]["max_length"] == 128 and plan["model"]["max_length_choice"] == "the data's length"
    assert list(smoke["by_length"]) == ["128"] and smoke["max_length"] == 128
    assert plan["estimate"]["total_minutes"] > 0 and set(review["risks"]) <= set(plan["risks"])
    training = read(trained_project, "training.json")
    # a benchmark figure, not an assertion: how good the smoke-based estimate was on this machine
    print(f"\nsmoke test {smoke['seconds']} s; plan estimated {plan['estimate']['total_minutes']} min for "
          f"{plan['training']['epochs']} epoch(s); training took {training['train_seconds'] / 60:.1f} min "
          f"({training['examples_per_second']} vs smoke {smoke['train_examples_per_second']} examples/s)")


def test_preflight_reports_are_in_the_models_mlflow_run(trained_project):
    from mlflow.tracking import MlflowClient

    run_id = json.loads((trained_project / "models/model/mlflow_run.json").read_text())["run_id"]
    client = MlflowClient(tracking_uri=f"sqlite:///{trained_project / 'mlflow.db'}")
    reports = {a.path for a in client.list_artifacts(run_id, "reports")}
    assert reports >= {"reports/data_profile.md", "reports/data_profile.json", "reports/review.md",
                       "reports/review.json", "reports/smoke.json", "reports/training_plan.md",
                       "reports/training_plan.json"}
    figures = {a.path for a in client.list_artifacts(run_id, "figures")}
    assert {"figures/class_counts.png", "figures/text_lengths.png"} <= figures
    mlrun = client.get_run(run_id)
    assert mlrun.data.tags["review_verdict"] == "pass" and mlrun.data.tags["plan_matches_config"] == "True"
    assert mlrun.data.metrics["plan/estimated_minutes"] > 0


def test_a_stratified_split_of_bitext_leaks_and_review_stops_it(trained_project, tmp_path):
    """The same template sentence with another order number lands on both sides of a stratified split."""
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("conf", "data/raw", "src"):
        shutil.copytree(trained_project / name, copy / name)
    shutil.copy(trained_project / "dvc.yaml", copy / "dvc.yaml")
    run(["hfclf", "prepare", "prepare.split=stratified"], copy)
    failed = run(["hfclf", "review"], copy, check=False)
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert "review found severe leakage" in failed.stderr and "set `split: group` in conf/prepare.yaml" in failed.stderr
    leak = read(copy, "review.json")["leakage"]
    assert leak["severe"] and leak["max_fraction"] > 0.03
    print("\nstratified split of the Bitext sample: " + ", ".join(
        f"{p['split']} vs {p['against']} {p['fraction']:.1%}" for p in leak["pairs"]))
