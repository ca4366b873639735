"""A team's shared services, for real, around a copy of the trained project: the pipeline logging to
an `mlflow server` (read back through its REST API), and data + model going through a DVC remote
into a fresh `git clone` that then has nothing to re-run and whose `make demo` answers with the pulled model."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import GIT_ID, api, free_port, mlflow_server, run, serving

pytestmark = pytest.mark.slow


@pytest.fixture()
def project_copy(trained_project, tmp_path) -> Path:
    """The trained project (DVC cache, MLflow store and all) copied, so these tests change nothing shared."""
    copy = tmp_path / trained_project.name
    shutil.copytree(trained_project, copy, symlinks=True)
    return copy


@pytest.fixture()
def server(project_copy, tmp_path):
    with mlflow_server(project_copy, tmp_path / "server") as base:
        yield base


def test_train_and_evaluate_log_to_a_tracking_server(project_copy, server):
    # a short run is enough here: the point is where it is recorded, not how good it is
    run(["hfclf", "train", "compute.max_minutes=0.05"], project_copy,
        MLFLOW_TRACKING_URI=server)
    run(["hfclf", "evaluate"], project_copy, MLFLOW_TRACKING_URI=server)
    saved = json.loads((project_copy / "models/model/mlflow_run.json").read_text())
    assert saved["tracking_uri"] == server

    experiment = api(server, "/api/2.0/mlflow/experiments/get-by-name",
                     experiment_name=project_copy.name)["experiment"]
    [found] = api(server, "/api/2.0/mlflow/runs/search",
                  {"experiment_ids": [experiment["experiment_id"]], "max_results": 10})["runs"]
    assert found["info"]["run_id"] == saved["run_id"] and found["info"]["status"] == "FINISHED"
    metrics = {m["key"]: m["value"] for m in found["data"]["metrics"]}
    assert {"val/best_macro_f1", "test/macro_f1", "test/accuracy"} <= set(metrics)
    assert {p["key"] for p in found["data"]["params"]} >= {"train.max_epochs", "model.name"}
    history = api(server, "/api/2.0/mlflow/metrics/get-history", run_id=saved["run_id"], metric_key="val/macro_f1")
    assert len(history["metrics"]) >= 1
    figures = api(server, "/api/2.0/mlflow/artifacts/list", run_id=saved["run_id"], path="figures")
    assert "figures/confusion_matrix.png" in {f["path"] for f in figures["files"]}
    png = api(server, "/get-artifact", path="figures/confusion_matrix.png", run_uuid=saved["run_id"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    table = json.loads(api(server, "/get-artifact", path="tables/confusion_matrix.json", run_uuid=saved["run_id"]))
    assert table and "actual" in json.dumps(table)


def test_push_then_pull_into_a_fresh_clone_needs_no_rerun(project_copy, tmp_path):
    remote = tmp_path / "dvc-remote"
    run(["dvc", "repro"], project_copy)                       # up to date already; makes sure of it
    run(["make", "remote", f"URL={remote}"], project_copy)
    run("git add -A && git commit -qm 'results, dvc.lock and the team remote'", project_copy, **GIT_ID)
    run(["make", "push"], project_copy)
    assert any(remote.rglob("*")), "nothing was pushed"

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project_copy), str(clone)], tmp_path)
    assert not (clone / "models" / "model").exists()
    pulled = run(["make", "pull"], clone)
    assert (clone / "models" / "model" / "model.safetensors").exists(), pulled.stdout
    assert "Running stage" not in run(["dvc", "repro"], clone).stdout   # the pulled outputs are current
    assert "up to date" in run(["dvc", "status"], clone).stdout.lower()

    from gradio_client import Client

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with serving(["make", "demo", f"DEMO_PORT={port}"], clone, url):
        _, decision = Client(url, verbose=False).predict("I want to cancel my order", api_name="/predict")
        assert decision.split()[0] == "ORDER"                             # the pulled model answers
