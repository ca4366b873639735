"""What keeps start-up and bookkeeping off the train stage's critical path: the MLflow side process
(infra/run_logger.py) logs everything it is given, in order, ends the run, and says what failed;
the loop's best validation pass gives the same logits as predicting validation again."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from hfclf.infra import compute
from hfclf.infra.errors import UserError
from hfclf.infra.run_logger import RunLogger
from hfclf.train import loop, modeling, objective
from hfclf.train.stage import ValidationLogits

LABELS = ["ACCOUNT", "ORDER", "REFUND"]


def client_for(folder):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")


def test_the_side_process_logs_every_call_in_order_and_draws_the_figure(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)     # the store's artifacts go to ./mlruns, as in a project
    processed = tmp_path / "processed"
    processed.mkdir()
    for split in ("train", "validation"):
        pd.DataFrame({"text": ["a", "b"], "label": ["x", "y"]}).to_parquet(processed / f"{split}.parquet")
    (tmp_path / "report.md").write_text("# report\n")
    history = [{"epoch": 0.5, "step": 2, "val_loss": 1.0, "val_accuracy": 0.5, "val_macro_f1": 0.4},
               {"epoch": 1.0, "step": 4, "val_loss": 0.8, "val_accuracy": 0.7, "val_macro_f1": 0.6}]

    run = RunLogger()
    run.use_store(f"sqlite:///{tmp_path / 'mlflow.db'}", "exp")
    run.open(run_name="train · tiny · abc", tags={"stage": "train"})
    run.log_params({"train.batch_size": 8, "model.name": "tiny"})
    run.log_datasets(processed, ["train", "validation"], "f" * 16, {"type": "file", "path": "tickets.csv"})
    for step in range(1, 5):
        run.log_metrics({"train/loss": 1.0 / step}, step)
    run.draw("hfclf.infra.render:plot_curves", tmp_path / "figures" / "curves.png", history, [[2, 1.2], [4, 0.9]],
             {"from_epoch": 0.75, "to_epoch": 1.0, "start_factor": 0.8, "best_before": {"epoch": 0.25, "score": 0.5}})
    run.log_artifacts([tmp_path / "report.md", tmp_path / "missing.md"])
    run.set_tags({"stop_reason": "completed"})
    run_id = run.run_id()
    assert run.close() == []

    assert (tmp_path / "figures" / "curves.png").stat().st_size > 0
    client = client_for(tmp_path)
    logged = client.get_run(run_id)
    assert logged.info.status == "FINISHED" and logged.info.run_name == "train · tiny · abc"
    assert logged.data.params == {"train.batch_size": "8", "model.name": "tiny"}
    assert logged.data.tags["stage"] == "train" and logged.data.tags["stop_reason"] == "completed"
    assert client.get_experiment(logged.info.experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
    history_logged = client.get_metric_history(run_id, "train/loss")
    assert [(m.step, m.value) for m in sorted(history_logged, key=lambda m: m.step)] == \
        [(s, 1.0 / s) for s in range(1, 5)]
    assert {a.path for a in client.list_artifacts(run_id, "reports")} == {"reports/report.md"}
    assert {a.path for a in client.list_artifacts(run_id, "figures")} == {"figures/curves.png"}
    contexts = {t.value for d in logged.inputs.dataset_inputs for t in d.tags if t.key == "mlflow.data.context"}
    assert contexts == {"train", "validation"}


def test_failures_there_are_warnings_and_a_figure_that_failed_is_an_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = RunLogger()
    run.use_store(f"sqlite:///{tmp_path / 'mlflow.db'}", "exp")
    run.open(run_name="r")
    run.log_params({"a": 1})
    run.log_params({"a": 2})              # MLflow refuses to change a logged param
    run.draw("hfclf.infra.render:no_such_plot", tmp_path / "f.png")
    run.log_metrics({"m": 1.0})           # calls after a failure are still applied
    run_id = run.run_id()
    with pytest.raises(RuntimeError, match=r"drawing .*f.png failed: AttributeError"):
        run.close()
    assert any(w.startswith("params: ") for w in run.close())          # closing twice: the same warnings
    logged = client_for(tmp_path).get_run(run_id)
    assert logged.info.status == "FAILED" and logged.data.metrics == {"m": 1.0} and logged.data.params == {"a": "1"}


def test_a_store_that_cannot_open_a_run_is_a_user_error_and_a_stage_that_stops_early_leaves_none(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "blocked").write_text("a file where the store's folder should be")
    run = RunLogger()
    run.use_store(f"sqlite:///{tmp_path / 'blocked' / 'mlflow.db'}", "exp")
    run.open(run_name="r")
    with pytest.raises(UserError, match="MLflow could not open the run"):
        run.run_id()
    with pytest.raises(UserError, match="MLflow could not open the run"):   # training asks as it goes
        run.opened_run()

    before_store = RunLogger()                         # the stage failed before it chose the store
    assert before_store.close("FAILED") == [] and before_store._proc.returncode is not None
    before_open = RunLogger()                          # ... or after, before the run
    before_open.use_store(f"sqlite:///{tmp_path / 'mlflow.db'}", "exp")
    assert before_open.close("FAILED") == [] and before_open._proc.returncode == 0
    client = client_for(tmp_path)
    assert client.search_runs([client.get_experiment_by_name("exp").experiment_id]) == []


def test_training_need_not_wait_for_the_run_to_open(tmp_path, monkeypatch):
    """`opened_run()` answers at once: None while the side process still imports MLflow and creates
    the store (seconds for a fresh database), the id once it has opened the run."""
    monkeypatch.chdir(tmp_path)
    run = RunLogger()
    run.use_store(f"sqlite:///{tmp_path / 'mlflow.db'}", "exp")
    run.open(run_name="r")
    assert run.opened_run() is None             # MLflow alone takes about a second to import
    run_id = run.run_id()
    assert run.opened_run() == run_id
    assert run.close() == []


def test_a_stage_killed_right_after_logging_metrics_leaves_no_side_process_behind(tmp_path, monkeypatch):
    """The stage's end of input (it was killed: no `end`) right behind queued metrics: the side process
    ends the run as KILLED and returns. It used to take that end for "nothing pending" and wait for
    another call forever, a ~280 MB process left behind by every killed training run."""
    import io
    import threading

    from hfclf.infra.run_logger import serve

    monkeypatch.chdir(tmp_path)
    lines = [{"op": "store", "uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "exp"},
             {"op": "open", "run_id": None, "run_name": "killed", "tags": {}}]
    lines += [{"op": "metrics", "metrics": {"train/loss": 1.0 / step}, "step": step, "timestamp": 1_700_000_000_000 + step}
              for step in range(1, 30)]
    commands = io.StringIO("".join(json.dumps(line) + "\n" for line in lines))   # then the end of input
    replies = io.StringIO()
    returned = []
    server = threading.Thread(target=lambda: returned.append(serve(commands, replies)), daemon=True)
    server.start()
    server.join(timeout=120)
    assert returned == [0], "the side process still waits for a stage that is gone"
    run_id = json.loads(replies.getvalue().splitlines()[0])["run_id"]
    logged = client_for(tmp_path).get_run(run_id)
    assert logged.info.status == "KILLED"
    assert len(client_for(tmp_path).get_metric_history(run_id, "train/loss")) == 29


def test_the_best_validation_pass_gives_the_logits_of_predicting_validation_again(tiny_model_dir, tickets):
    tokenizer, model, _ = modeling.load_for_training(str(tiny_model_dir), LABELS, seed=0)
    texts = tickets["instruction"].tolist()
    y = tickets["category"].map({label: i for i, label in enumerate(LABELS)}).to_numpy()
    settings = loop.TrainSettings(epochs=3, batch_size=8, learning_rate=1e-2, freeze_embeddings=False,
                                  evals_per_epoch=2, early_stopping_patience=6, seed=0)
    hw = compute.select("cpu", "fp32", 1)
    passes = ValidationLogits(objective.Objective())
    result = loop.train(model, tokenizer, texts[:60], y[:60], texts[60:], y[60:], settings, hw, objective=passes)
    assert len(passes.passes) == len(result.history) == 6

    val = texts[60:]
    kept = passes.best(result, len(val), loop.validation_sample(len(val), settings.eval_max_rows, settings.seed))
    again = modeling.Predictor(model, tokenizer, settings.max_length, hw).predict_logits(val, settings.eval_batch_size)
    assert kept is not None      # the same model on the same rows; the Predictor may batch (pad) them differently,
    np.testing.assert_allclose(kept, again, rtol=1e-5, atol=1e-6)   # which moves float rounding only
    assert passes.best(result, len(val), np.arange(len(val) - 1)) is None      # the loop scored a sample only


def test_the_best_pass_is_found_after_a_resume():
    passes = ValidationLogits(objective.Objective())
    passes.passes = [np.full((2, 3), 2.0), np.full((2, 3), 3.0)]         # this attempt's two passes ...
    history = [{"epoch": e, "val_macro_f1": f} for e, f in ((0.5, 0.9), (1.0, 0.7), (1.5, 0.8))]  # ... after one before
    result = SimpleNamespace(history=history, best_epoch=1.0, best_val_score=0.7, score_name="macro_f1")
    assert np.array_equal(passes.best(result, 2, np.arange(2)), np.full((2, 3), 2.0))
    result.best_epoch, result.best_val_score = 0.5, 0.9                   # the best pass came before the resume
    assert passes.best(result, 2, np.arange(2)) is None
    assert passes.score_name == "macro_f1" and passes.targets(["x"], ["x"]).tolist() == [0]   # the Objective's


def test_the_train_stage_module_imports_nothing_heavy():
    import subprocess
    import sys

    code = ("import sys, hfclf.train.stage, hfclf.infra.run_logger; "
            "print(json.dumps(sorted(m for m in ('torch', 'mlflow', 'transformers', 'matplotlib', 'pandas', 'sklearn') "
            "if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
