"""Scaling out on engines people already run, with the tiny model: a Hydra + Optuna sweep whose
trials nest under one MLflow run, promotion of its best values into conf/, DVC's experiment queue
on a small grid, torchrun data parallelism (2 CPU processes, gloo) through `make
train-distributed`, and an unreachable tracking server stopping train before any compute."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import hfclf_command, make_tickets, run_stage, stage_env
from hfclf.train import sweeps
from hfclf.infra.errors import UserError

TINY = ("model.freeze_embeddings=false", "compute.device=cpu", "compute.threads=1")
SPACE = {"train.learning_rate", "train.max_epochs", "train.batch_size", "train.warmup_ratio", "model.max_length"}


def mlflow_client(folder: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")


def test_sweep_nests_trials_under_one_run_and_promotes_the_best(workdir, tickets, tiny_model_dir):
    tickets.to_csv(workdir / "tickets.csv", index=False)
    run_stage(workdir, "prepare", "data.source=tickets.csv", "prepare.validation_size=0.2", "prepare.test_size=0.2")
    result = subprocess.run(hfclf_command("train", "--multirun", "hparams_search=optuna",
                                          f"tracking.uri=sqlite:///{workdir / 'mlflow.db'}", f"model.name={tiny_model_dir}",
                                          *TINY, "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=2",
                                          "hydra.launcher.n_jobs=2"),
                            cwd=workdir, env=stage_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    [sweep_dir] = [p for p in (workdir / "sweeps").iterdir() if p.is_dir()]
    optuna_best = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())   # Optuna's own summary
    client = mlflow_client(workdir)
    [parent] = client.search_runs(["1"], "tags.stage = 'sweep'")
    trials = client.search_runs(["1"], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(trials) == 3 and parent.info.status == "FINISHED"
    assert sorted(t.data.tags["sweep_trial"] for t in trials) == ["0", "1", "2"]
    scores = {t.info.run_id: t.data.metrics["val/best_macro_f1"] for t in trials}
    assert len({t.info.run_name for t in trials}) == 3                   # trials told apart by name
    assert parent.info.run_name.startswith("sweep · ")
    best = max(trials, key=lambda t: scores[t.info.run_id])
    assert parent.data.metrics["val/best_macro_f1"] == max(scores.values())
    assert parent.data.tags["best_run_id"] == best.info.run_id

    best_file = workdir / "sweeps" / "best_params.yaml"
    values = yaml.safe_load(best_file.read_text())
    assert set(values) == SPACE
    assert values == {k: sweeps.parse_value(best.data.params[k]) for k in SPACE}
    assert optuna_best["best_value"] == pytest.approx(max(scores.values()))
    assert "# conf/train.yaml" in best_file.read_text() and "# conf/model/default.yaml" in best_file.read_text()
    assert (sweep_dir / "summary.md").read_text().count(" | ") > 3 * 5
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {"best_params.yaml", "summary.md"}
    # trials wrote under the sweep folder, never over the pipeline's outputs, and dropped their weights
    assert not (workdir / "models" / "model").exists() and not (workdir / "reports" / "training.json").exists()
    assert (sweep_dir / "trial-0" / "reports" / "training.json").exists()
    assert not list(sweep_dir.glob("trial-*/model"))

    promoted = subprocess.run(hfclf_command("promote"), cwd=workdir, env=stage_env(),
                              capture_output=True, text=True, timeout=120)
    assert promoted.returncode == 0, promoted.stderr
    train_conf = yaml.safe_load((workdir / "conf" / "train.yaml").read_text())["train"]
    model_conf = yaml.safe_load((workdir / "conf" / "model" / "default.yaml").read_text())
    assert train_conf["learning_rate"] == values["train.learning_rate"]
    assert train_conf["max_epochs"] == values["train.max_epochs"] and model_conf["max_length"] == values["model.max_length"]
    assert "# peak learning rate" in (workdir / "conf" / "train.yaml").read_text()          # comments kept


def test_promote_edits_in_place_and_refuses_unknown_keys(tmp_path):
    conf = tmp_path / "conf"
    (conf / "model").mkdir(parents=True)
    (conf / "train.yaml").write_text("defaults:\n  - shared\n\ntrain:\n  max_epochs: 3        # upper bound\n"
                                     "  learning_rate: 3.0e-4   # peak\n")
    (conf / "model" / "default.yaml").write_text("name: x   # model\nmax_length: 128   # tokens\n")
    best = tmp_path / "best.yaml"
    best.write_text("train.learning_rate: 1.0e-05\ntrain.max_epochs: 2\nmodel.max_length: 64\n")
    assert sweeps.promote(best, conf) == {"train.learning_rate": conf / "train.yaml", "train.max_epochs": conf / "train.yaml",
                                          "model.max_length": conf / "model" / "default.yaml"}
    assert (conf / "train.yaml").read_text().splitlines()[-2:] == ["  max_epochs: 2        # upper bound",
                                                                   "  learning_rate: 1.0e-05  # peak"]  # column kept
    assert yaml.safe_load((conf / "model" / "default.yaml").read_text())["max_length"] == 64
    best.write_text("optimizer.momentum: 0.9\n")
    with pytest.raises(UserError, match="no file under .* sets 'optimizer.momentum'"):
        sweeps.promote(best, conf)


# --- a real git + DVC repository of this project, configured for the tiny model -----------------

def git(*args: str, cwd: Path) -> None:
    env = stage_env(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com", GIT_COMMITTER_NAME="t",
                    GIT_COMMITTER_EMAIL="t@example.com")
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def sh(cmd: str, cwd: Path, timeout: int = 600, check: bool = True, **extra: str) -> subprocess.CompletedProcess:
    env = stage_env(PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}", **extra)
    result = subprocess.run(cmd, cwd=cwd, env=env, shell=True, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        pytest.fail(f"`{cmd}` exited {result.returncode}\n{result.stdout[-5000:]}\n{result.stderr[-5000:]}")
    return result


@pytest.fixture(scope="module")
def dvc_project(tmp_path_factory, tiny_model_dir, baked_project) -> Path:
    """The baked project in a fresh git + DVC repo: tiny model, synthetic tickets, `prepare` already run."""
    root = tmp_path_factory.mktemp("dvc-project")
    for name in ("conf", "src", "data/out_of_scope", "data/challenge"):
        shutil.copytree(baked_project / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("dvc.yaml", "Makefile", "pyproject.toml", ".gitignore", ".dvcignore"):
        shutil.copy(baked_project / name, root / name)
    (root / "data" / "raw").mkdir(parents=True)
    make_tickets().to_csv(root / "data" / "raw" / "tickets.csv", index=False)
    settings = {"data/default.yaml": {"source": "data/raw/tickets.csv", "text_column": "instruction",
                                      "label_column": "category"},
                "model/default.yaml": {"name": str(tiny_model_dir), "freeze_embeddings": False},
                "compute/default.yaml": {"device": "cpu", "threads": 1},
                "train.yaml": {"train.max_epochs": 2, "train.learning_rate": 1e-2, "train.batch_size": 8},
                "prepare.yaml": {"prepare.validation_size": 0.2, "prepare.test_size": 0.2},
                "smoke.yaml": {"smoke.steps": 30}}   # train depends on the smoke test; the tiny model needs more steps
    for name, values in settings.items():
        for key, value in values.items():
            sweeps.set_in_file(root / "conf" / name, key.split("."), value)
    git("init", "-q", "--initial-branch=main", cwd=root)
    sh("dvc init -q && dvc config core.analytics false && dvc config core.autostage true", root)
    git("add", "-A", cwd=root)
    git("commit", "-qm", "tiny project", cwd=root)
    sh("dvc repro prepare", root)
    git("add", "-A", cwd=root)
    git("commit", "-qm", "prepared", cwd=root)
    return root


def test_make_train_distributed_runs_two_ranks_and_logs_once(dvc_project):
    port = free_port()
    launch = (f"{sys.executable} -m torch.distributed.run --nproc_per_node 2 --master_addr 127.0.0.1 "
              f"--master_port {port}")
    result = sh(f'make train-distributed PYTHON={sys.executable} LAUNCH="{launch}"', dvc_project)
    log = result.stdout + result.stderr
    assert "relaunching:" in log and "torch.distributed.run" in log
    for rank in (0, 1):
        assert f"rank {rank}/2 (local {rank}) joined the gloo process group" in log
    checksums = {line.split("weights checksum ")[1].strip() for line in log.splitlines() if "weights checksum" in line}
    steps = [line for line in log.splitlines() if "trained" in line and "on its shard" in line]
    assert len(steps) == 2 and len(checksums) == 1          # both ranks trained, DDP kept them identical

    summary = json.loads((dvc_project / "reports" / "training.json").read_text())
    batches_per_epoch = -(-len(pd.read_parquet(dvc_project / "data/processed/train.parquet")) // 8)
    assert summary["processes"] == 2 and summary["steps"] == summary["epochs_run"] * -(-batches_per_epoch // 2)
    assert (dvc_project / "models/model/model.safetensors").exists() and not (dvc_project / "models/checkpoints/last.pt").exists()
    client = mlflow_client(dvc_project)
    [run] = client.search_runs(["1"])                                   # one run: only rank 0 logged
    epochs = client.get_metric_history(run.info.run_id, "val/macro_f1")
    assert len(epochs) == len(summary["history"])                        # each epoch's metrics logged once
    assert "Running stage 'train'" in result.stdout
    assert "Running stage" not in sh("dvc repro train", dvc_project).stdout   # DVC recorded it: up to date


def test_dvc_queue_runs_a_small_grid_compared_by_exp_show(dvc_project):
    sh("dvc repro train", dvc_project)      # a no-op after the test above; the queue then re-runs from train on
    git("add", "-A", cwd=dvc_project)
    git("commit", "-qm", "baseline", cwd=dvc_project)
    sh("dvc exp run --queue -S 'conf/train.yaml:train.max_epochs=1,3' evaluate", dvc_project)
    sh("dvc queue start -j 2", dvc_project)
    deadline = time.time() + 420
    while True:
        status = sh("dvc queue status", dvc_project).stdout
        if "Queued" not in status and "Running" not in status:
            break
        if time.time() > deadline:
            sh("dvc queue kill --all 2>/dev/null; dvc queue stop --kill", dvc_project, check=False)
            pytest.fail(f"the DVC queue did not finish in 7 minutes:\n{status}")
        time.sleep(3)
    assert status.count("Success") == 2, status
    table = json.loads(sh("dvc exp show --json", dvc_project).stdout)
    found = {}
    for baseline in table:
        for exp in baseline.get("experiments") or []:
            data = exp["revs"][0]["data"]
            epochs = data["params"]["conf/train.yaml"]["data"]["train"]["max_epochs"]
            found[epochs] = data["metrics"]["reports/metrics.json"]["data"]["macro_f1"]
    assert set(found) == {1, 3} and all(0 <= f <= 1 for f in found.values())
    shown = sh("dvc exp show --no-pager --md", dvc_project).stdout
    assert "macro_f1" in shown and "train.max_epochs" in shown
    runs = mlflow_client(dvc_project).search_runs(["1"], "tags.stage = 'train'")
    assert {r.data.params["train.max_epochs"] for r in runs} >= {"1", "3"}    # in the project's own MLflow store
    sh("dvc queue stop", dvc_project, check=False)


def test_unreachable_tracking_server_stops_train_before_any_compute(dvc_project):
    before = sorted(p.name for p in (dvc_project / "models").rglob("*")) if (dvc_project / "models").exists() else []
    url = f"http://127.0.0.1:{free_port()}"
    result = subprocess.run(hfclf_command("train"), cwd=dvc_project,
                            env=stage_env(MLFLOW_TRACKING_URI=url), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert f"ERROR: MLflow tracking server {url} did not answer an API call" in result.stderr
    assert "Traceback" not in result.stderr and "base model" not in result.stdout + result.stderr   # nothing loaded
    after = sorted(p.name for p in (dvc_project / "models").rglob("*")) if (dvc_project / "models").exists() else []
    assert after == before


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
