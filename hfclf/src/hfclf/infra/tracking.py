"""MLflow: one run per trained model. `train` opens it and saves its id next to the model;
later stages reopen that run, so the UI shows one row with params, curves, metrics and reports.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import urllib.request
from pathlib import Path
from typing import Iterator

from omegaconf import DictConfig, OmegaConf

from hfclf.infra.errors import UserError

log = logging.getLogger(__name__)

RUN_FILE = "mlflow_run.json"


def tracking_uri(cfg: DictConfig) -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI") or cfg.tracking.uri
    # `dvc exp run --queue/--temp` runs stages in a scratch copy of the project and names the real
    # one in DVC_ROOT: a relative sqlite store must stay the project's, or those runs would vanish.
    root, prefix = os.environ.get("DVC_ROOT"), "sqlite:///"
    if root and uri.startswith(prefix) and not Path(uri[len(prefix):]).is_absolute():
        return prefix + str(Path(root) / uri[len(prefix):])
    return uri


def configure(cfg: DictConfig) -> str:
    """Point MLflow at the store, failing fast (before any compute) when a server is unreachable."""
    import mlflow

    uri = tracking_uri(cfg)
    if uri.startswith(("http://", "https://")):
        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=10).read()
        except Exception as err:
            raise UserError(f"MLflow tracking server {uri} is unreachable ({err}). Start it, fix "
                            "MLFLOW_TRACKING_URI / tracking.uri, or unset it to use the local sqlite store.") from None
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(cfg.tracking.experiment)
    return uri


def flat_params(cfg: DictConfig, sections: tuple[str, ...]) -> dict[str, str]:
    """The resolved config of the given sections as flat `section.key` params."""
    container = OmegaConf.to_container(cfg, resolve=True)
    flat: dict[str, str] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        else:
            flat[prefix] = str(value)[:500]
    for section in sections:
        if section in container:
            walk(section, container[section])
    return flat


def git_commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if commit.returncode != 0:
        return "unknown"
    return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def save_run_id(model_dir: Path, run_id: str, uri: str) -> None:
    (model_dir / RUN_FILE).write_text(json.dumps({"run_id": run_id, "tracking_uri": uri}), encoding="utf-8")


def load_run_id(model_dir: Path) -> str:
    path = model_dir / RUN_FILE
    if not path.exists():
        raise UserError(f"'{path}' is missing: the model was not trained by this pipeline; run `make train`.")
    return json.loads(path.read_text(encoding="utf-8"))["run_id"]


def _missing_run(cfg: DictConfig, model_dir: Path, run_id: str, err: Exception) -> UserError:
    return UserError(f"MLflow run {run_id} of '{model_dir}' is not in the store at {tracking_uri(cfg)} "
                     f"({str(err).splitlines()[0]}). Re-run `make train` with this store.")


@contextlib.contextmanager
def model_run(cfg: DictConfig, model_dir: Path) -> Iterator:
    """Reopen the trained model's MLflow run (for evaluate, analyze, card ...)."""
    import mlflow

    configure(cfg)
    run_id = load_run_id(model_dir)
    try:
        run = mlflow.start_run(run_id=run_id)
    except Exception as err:
        raise _missing_run(cfg, model_dir, run_id, err) from None
    with run:
        yield run


def run_params(cfg: DictConfig, model_dir: Path) -> tuple[str, dict[str, str]]:
    """(run id, params) of the trained model's MLflow run, without reopening it."""
    import mlflow

    configure(cfg)
    run_id = load_run_id(model_dir)
    try:
        return run_id, mlflow.MlflowClient().get_run(run_id).data.params
    except Exception as err:
        raise _missing_run(cfg, model_dir, run_id, err) from None


def log_report_files(paths: list[Path], artifact_path: str = "reports") -> None:
    import mlflow

    for path in paths:
        if path.exists():
            mlflow.log_artifact(str(path), artifact_path=artifact_path)
