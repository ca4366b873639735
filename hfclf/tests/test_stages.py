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
              "train.epochs=2", "train.learning_rate=1e-2", "train.batch_size=8", "compute.device=cpu")
    model_dir = workdir / "models/model"
    assert (model_dir / "model.safetensors").exists() and (model_dir / "classifier.json").exists()
    assert (workdir / "reports/training.md").exists() and (workdir / "reports/figures/training_curves.png").exists()

    run_stage(workdir, "evaluate")
    metrics = json.loads((workdir / "reports/metrics.json").read_text())
    assert set(metrics) >= {"accuracy", "macro_f1", "weighted_f1"} and metrics["n"] == 18
    assert (workdir / "reports/figures/confusion_matrix.png").exists()
    predictions = pd.read_csv(workdir / "reports/predictions.csv")
    assert list(predictions.columns[:3]) == ["text", "actual", "predicted"] and len(predictions) == 18


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
