"""Stage entry points end to end on tiny inputs: Hydra overrides work, outputs land where dvc.yaml
says, and a user error is one clear line on stderr - never a traceback."""
from __future__ import annotations

import json

import pandas as pd

from conftest import run_stage


def test_prepare_train_evaluate_on_a_tiny_model(workdir, tickets, tiny_model_dir):
    tickets.to_csv(workdir / "tickets.csv", index=False)
    run_stage(workdir, "prepare", "data.source=tickets.csv", "prepare.validation_size=0.2", "prepare.test_size=0.2",
              "prepare.split=stratified")
    splits = {s: pd.read_parquet(workdir / "data/processed" / f"{s}.parquet") for s in ("train", "validation", "test")}
    assert [len(s) for s in splits.values()] == [54, 18, 18]
    profile = json.loads((workdir / "reports/data_profile.json").read_text())
    assert profile["num_classes"] == 3 and profile["rows_total"] == 90
    assert "tags" in profile["extra_columns"]

    run_stage(workdir, "train", f"model.name={tiny_model_dir}", "model.freeze_embeddings=false",
              "train.max_epochs=2", "train.learning_rate=1e-2", "train.batch_size=8", "compute.device=cpu")
    model_dir = workdir / "models/model"
    assert (model_dir / "model.safetensors").exists() and (model_dir / "classifier.json").exists()
    assert (workdir / "reports/training.md").exists() and (workdir / "reports/figures/training_curves.png").exists()

    run_stage(workdir, "evaluate")
    metrics = json.loads((workdir / "reports/metrics.json").read_text())
    assert set(metrics) >= {"accuracy", "macro_f1", "weighted_f1"} and metrics["n"] == 18
    assert (workdir / "reports/figures/confusion_matrix.png").exists()
    predictions = pd.read_csv(workdir / "reports/predictions.csv")
    assert list(predictions.columns[:3]) == ["text", "actual", "predicted"] and len(predictions) == 18
    check_mlflow_run(workdir, tiny_model_dir)


def check_mlflow_run(workdir, model_dir) -> None:
    """What the MLflow UI shows of the run: model-training view, a telling name, tags, datasets, grouped metrics."""
    from mlflow import MlflowClient

    import hfclf

    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    run_id = json.loads((workdir / "models/model/mlflow_run.json").read_text())["run_id"]
    run = client.get_run(run_id)
    assert client.get_experiment(run.info.experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
    assert run.info.run_name.startswith(f"train · {model_dir.name} · ")
    fingerprint = json.loads((workdir / "data/processed/labels.json").read_text())["fingerprint"]
    tags = run.data.tags
    assert tags["data_fingerprint"] == fingerprint and tags["hfclf_version"] == hfclf.__version__
    assert tags["git_commit"] and tags["stage"] == "train"
    inputs = {next(t.value for t in d.tags if t.key == "mlflow.data.context"): d.dataset for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"train", "validation", "test"}
    assert {d.digest for d in inputs.values()} == {fingerprint[:36]}
    assert json.loads(inputs["train"].source)["uri"].endswith("tickets.csv")
    metrics = run.data.metrics
    assert {"train/loss", "val/macro_f1", "val/best_macro_f1", "test/accuracy", "test/macro_f1",
            "baseline/majority/macro_f1"} <= set(metrics)
    assert all("/" in name for name in metrics), sorted(metrics)
    assert {f"test/per_class/f1/{label}" for label in json.loads(
        (workdir / "data/processed/labels.json").read_text())["labels"]} <= set(metrics)
    assert len(client.get_metric_history(run_id, "val/macro_f1")) >= 2                  # a curve: several validation passes
    assert [m.step for m in client.get_metric_history(run_id, "test/macro_f1")] == [0]   # a scalar: once
    tables = {a.path for a in client.list_artifacts(run_id, "tables")}
    assert tables == {"tables/confusion_matrix.json", "tables/per_class.json"}


def test_bad_input_is_one_clear_message_without_traceback(workdir, tickets):
    tickets.to_csv(workdir / "tickets.csv", index=False)
    result = run_stage(workdir, "prepare", "data.source=tickets.csv", "data.label_column=topic", check=False)
    assert result.returncode == 2
    assert "ERROR: 'tickets.csv' (split 'all') has no column 'topic'" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (workdir / "data/processed").exists()


def test_missing_inputs_point_to_the_stage_to_run(workdir):
    result = run_stage(workdir, "train", check=False)
    assert result.returncode == 2 and "run `make prepare`" in result.stderr
    assert "Traceback" not in result.stderr
