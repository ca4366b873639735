"""MLflow: one run per trained model. `train` opens it and saves its id next to the model;
later stages reopen that run, so the UI shows one row with params, curves, metrics and reports.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
from pathlib import Path
from typing import Iterator

from omegaconf import DictConfig, OmegaConf

from hfclf.infra.errors import UserError

log = logging.getLogger(__name__)

RUN_FILE = "mlflow_run.json"
# The MLflow 3 UI picks its view from this experiment tag: model training (runs, metrics, charts,
# datasets), not the GenAI view it opens untagged experiments in.
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"


def tracking_uri(cfg: DictConfig) -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI") or cfg.tracking.uri
    # `dvc exp run --queue/--temp` runs stages in a scratch copy of the project and names the real
    # one in DVC_ROOT: a relative sqlite store must stay the project's, or those runs would vanish.
    root, prefix = os.environ.get("DVC_ROOT"), "sqlite:///"
    if root and uri.startswith(prefix) and not Path(uri[len(prefix):]).is_absolute():
        return prefix + str(Path(root) / uri[len(prefix):])
    return uri


# MLflow's own HTTP client retries 7 times with exponential backoff (minutes against a half-up server):
# the library bounds it for every stage unless the user set these variables.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
_checked: set[str] = set()


def _restore_hint() -> str:
    stage = os.environ.get("DVC_STAGE")
    if not stage:
        return ""
    return (f" DVC removed the outputs of stage '{stage}' before running it: `dvc checkout {stage}` "
            "restores the previous ones.")


def check_server(uri: str, timeout: float = 10.0) -> None:
    """A real API call (search_experiments) to a tracking server, without retries and within
    `timeout` seconds; a UserError naming the URI when it does not answer properly (a server that
    answers /health but fails its API is as unusable as a dead one). Local stores are not checked."""
    if not uri.startswith(("http://", "https://")) or uri in _checked:
        return
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    import threading

    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(max(1, int(timeout)))
    outcome: dict = {}

    def call() -> None:
        try:
            from mlflow import MlflowClient

            MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
            outcome["ok"] = True
        except BaseException as err:   # noqa: BLE001 - any failure means the server is unusable
            outcome["error"] = err
    try:
        worker = threading.Thread(target=call, daemon=True, name="mlflow-check")
        worker.start()
        worker.join(timeout + 5)   # the import and one request: a hard deadline, whatever the client does
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    if outcome.get("ok"):
        _checked.add(uri)
        return
    err = outcome.get("error")
    reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:300] if err is not None \
        else f"no answer within {timeout:g} s"
    raise UserError(f"MLflow tracking server {uri} did not answer an API call (search_experiments) within "
                    f"{timeout:g} s: {reason}. Start or fix the server, fix MLFLOW_TRACKING_URI / tracking.uri, "
                    "or unset it to use the local sqlite store (tracking.check_timeout sets the wait)."
                    + _restore_hint())


def check(cfg: DictConfig) -> str:
    """Check the configured tracking store before any compute (cli.stage calls it); returns its URI."""
    uri = tracking_uri(cfg)
    check_server(uri, float(cfg.tracking.get("check_timeout", 10) or 10))
    return uri


def configure(cfg: DictConfig) -> str:
    """Point MLflow at the store, failing fast (before any compute) when a server is unusable."""
    uri = check(cfg)
    use_store(uri, cfg.tracking.experiment)
    return uri


def use_store(uri: str, experiment_name: str) -> None:
    """Point MLflow at the store at `uri` and make `experiment_name` (created if new) the active
    experiment, tagged as model training."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    experiment = mlflow.set_experiment(experiment_name)
    if not (experiment.tags or {}).get(EXPERIMENT_KIND_TAG):  # a kind set by hand is kept
        # MLflow 3 opens an experiment without this tag in its GenAI view (traces, judges, prompts)
        mlflow.MlflowClient().set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)


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


# --------------------------------------------------------------------------- telling runs apart

def git_short_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def run_label(params: dict[str, str] | None = None) -> str:
    """What tells this run apart: the DVC experiment name under `dvc exp run` (DVC sets
    DVC_EXP_NAME), else the short git commit, marked `-dirty` with a digest of the params when the
    work tree has uncommitted changes (two runs of edited configs on one commit differ)."""
    name = os.environ.get("DVC_EXP_NAME")
    if name:
        return name
    commit = git_commit()
    short = git_short_commit() or "no-git"
    if commit.endswith("-dirty"):
        import hashlib

        digest = hashlib.sha256(json.dumps(params or {}, sort_keys=True).encode()).hexdigest()[:6]
        return f"{short}-dirty-{digest}"
    return short


def model_short_name(name: str) -> str:
    """`sentence-transformers/all-MiniLM-L6-v2` or a local folder -> its last path part."""
    return str(name).rstrip("/\\").replace("\\", "/").split("/")[-1] or str(name)


def run_name(stage: str, model_name: str, params: dict[str, str] | None = None) -> str:
    """`train · all-MiniLM-L6-v2 · <dvc exp name or git short sha>`: the run list's Run Name."""
    return f"{stage} · {model_short_name(model_name)} · {run_label(params)}"


def run_tags(stage: str, fingerprint: str | None, model_name: str | None = None) -> dict[str, str]:
    """Tags every run gets: git commit, DVC experiment name (when there is one), data fingerprint,
    library version, stage and base model. `mlflow.source.git.commit` fills the UI's Version column."""
    from hfclf import __version__

    commit = git_commit()
    tags = {"git_commit": commit, "hfclf_version": __version__, "stage": stage,
            "data_fingerprint": str(fingerprint)}
    if commit != "unknown":
        tags["mlflow.source.git.commit"] = commit.removesuffix("-dirty")
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
    if model_name:
        tags["base_model"] = str(model_name)
    return tags


# --------------------------------------------------------------------------- datasets as run inputs

def dataset_source(origin: dict | None) -> str:
    """Where the data came from, as a readable source: a file path, or `hf://datasets/<id>@<revision>`."""
    origin = origin or {}
    if origin.get("type") == "hub":
        subset = f"/{origin['subset']}" if origin.get("subset") else ""
        return f"hf://datasets/{origin.get('id')}{subset}@{origin.get('revision') or 'main'}"
    return str(origin.get("path") or origin.get("id") or "unknown")


def _source(origin: dict | None, context: str):
    """The MLflow dataset source: the Hub dataset (id, subset, revision, split) or the local file."""
    origin = origin or {}
    if origin.get("type") == "hub":
        from mlflow.data.huggingface_dataset_source import HuggingFaceDatasetSource

        return HuggingFaceDatasetSource(path=str(origin.get("id")), config_name=origin.get("subset"),
                                        revision=origin.get("revision"), split=context)
    import warnings

    from mlflow.data.dataset_source_registry import resolve_dataset_source

    with warnings.catch_warnings():   # "can be interpreted in multiple ways": both are the local-file source
        warnings.simplefilter("ignore")
        return resolve_dataset_source(str(Path(str(origin.get("path") or "unknown")).resolve()))


def log_datasets(frames: dict[str, "object"], fingerprint: str, origin: dict | None) -> None:
    """Each split as an MLflow dataset input of the active run (context train / validation / test),
    digest = the data fingerprint, source = the file or Hub id + revision: the run list's Dataset
    column and the run's lineage show what it was trained and tested on."""
    import mlflow

    source_text = dataset_source(origin)
    base = model_short_name(source_text.split("@")[0]) or "data"
    for context, frame in frames.items():
        columns = [c for c in ("text", "label") if c in frame.columns] or list(frame.columns)
        data = mlflow.data.from_pandas(frame[columns], source=_source(origin, context), name=f"{base}/{context}",
                                       targets="label" if "label" in columns else None,
                                       digest=str(fingerprint)[:36])
        tags = {"source": source_text, "rows": str(len(frame))}
        try:
            mlflow.log_input(data, context=context, tags=tags)
        except mlflow.exceptions.MlflowException as err:
            # parallel runs (a sweep's trials) logging the same dataset at once race in the store's
            # get-or-create: the loser sees a UNIQUE violation, and the dataset now exists - log it again
            if "UNIQUE constraint failed" not in str(err):
                raise
            log.info("dataset %s was registered by a parallel run at the same moment: logging it again", data.name)
            mlflow.log_input(data, context=context, tags=tags)


# --------------------------------------------------------------------------- the UI

UI_VIEW = "workflowType=machine_learning"


def ui_url(base: str, store: Path = Path("mlflow.db"), conf: Path = Path("conf/tracking/default.yaml")) -> str:
    """The address `make ui` prints: this project's experiment in the UI's model-training view.

    MLflow 3.17's UI picks GenAI or model training from a switch it keeps in the browser (default
    GenAI) or from `?workflowType=` in the address, not from the experiment's kind tag; so the
    link carries the view. Without a store or experiment yet: the experiment list in that view."""
    import contextlib
    import sqlite3

    name = OmegaConf.load(conf).get("experiment") if conf.exists() else None
    experiment_id = None
    if name and store.exists():
        with contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as db:
            try:
                row = db.execute("SELECT experiment_id FROM experiments WHERE name = ?", (str(name),)).fetchone()
            except sqlite3.Error:
                row = None
        experiment_id = row[0] if row else None
    base = base.rstrip("/")
    if experiment_id is None:
        return f"{base}/#/experiments?{UI_VIEW}"
    return f"{base}/#/experiments/{experiment_id}/runs?{UI_VIEW}"


if __name__ == "__main__":   # `python -m hfclf.infra.tracking http://127.0.0.1:5000` (make ui)
    import sys

    print(ui_url(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:5000"))

