"""register: the trained model into the MLflow model registry, with its test metrics.

Logs models/model as an MLflow pyfunc model (serving.TicketClassifier, built from code by
pyfunc_model.py) into the model's MLflow run and registers it under `register.name`. The library
code the model runs (bundle.INFERENCE_MODULES, as `hfclf/...`) travels inside the MLflow model
(`code_paths`), so loading it needs no install of hfclf, only its dependencies.

Registering is idempotent: a version of the same run whose weights, classifier.json and code
match is reused, not duplicated. A multi-label model's signature adds the `labels` column (the
predicted label set, serving.py) and its version is tagged with the task and per-label thresholds
instead of an abstain threshold. Output: reports/registry.json (name, version, models:/ URI)
that `card` and `publish` record.
"""
from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from omegaconf import DictConfig

from hfclf.data import multilabel as label_sets
from hfclf.infra import tracking
from hfclf.infra.cli import stage
from hfclf.infra.errors import UserError
from hfclf.infra.render import write_json
from hfclf.ship import bundle

log = logging.getLogger(__name__)

WEIGHTS = "model.safetensors"
# The library modules the pyfunc model runs, as paths inside hfclf/ (they are all it ships).
CODE_FILES = (*bundle.INFERENCE_MODULES, "ship/serving.py", "ship/pyfunc_model.py")
MAX_TAG_CHARS = 5000      # a tag value MLflow keeps whole everywhere (logged-model and run tags: 8000)


@dataclass
class Registered:
    name: str
    version: str
    model_uri: str          # models:/<name>/<version>
    run_id: str
    fingerprint: str        # weights + classifier.json + code; an equal one is reused
    reused: bool            # True when this exact model was already registered


def fingerprint(model_dir: Path) -> str:
    """sha256 over the weights, classifier.json and the code that loads and runs them."""
    digest = hashlib.sha256()
    files = [model_dir / WEIGHTS, model_dir / "classifier.json", *(bundle.LIBRARY_DIR / name for name in CODE_FILES)]
    for path in files:
        digest.update(path.name.encode())
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def signature(multi_label: bool = False):
    """Texts in; label, confidence, top-k out (a multi-label model first gives `labels`, the set as JSON)."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    label_set = [ColSpec("string", "labels")] if multi_label else []
    return ModelSignature(
        inputs=Schema([ColSpec("string")]),  # one column of texts: a list[str] or a DataFrame
        outputs=Schema([*label_set, ColSpec("string", "label"), ColSpec("double", "confidence"),
                        ColSpec("string", "top_k")]),
        params=ParamSchema([ParamSpec("top_k", "long", 3), ParamSpec("batch_size", "long", 64)]))


def pip_requirements() -> list[str]:
    """Pinned to what is installed now; listing them skips MLflow's slow requirement inference."""
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for package in ("mlflow", "torch", "transformers", "tokenizers", "safetensors", "pandas", "numpy", "tqdm"):
        try:
            pins.append(f"{package}=={version(package).split('+')[0]}")
        except PackageNotFoundError:
            pins.append(package)
    return pins


def find_existing(client, name: str, run_id: str, sha: str):
    try:
        versions = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    except Exception:  # the registered model does not exist yet
        return None
    for mv in sorted(versions, key=lambda v: int(v.version), reverse=True):
        if (mv.tags or {}).get("fingerprint") == sha:
            return mv
    return None


def register(model_dir: Path, name: str, run_id: str, tags: dict[str, str], description: str,
             artifact_name: str = "model", metrics: dict[str, float] | None = None) -> Registered:
    """Log `model_dir` as a pyfunc model into the active run and register it as `name` (idempotent);
    `metrics` are linked to the logged model, `tags` (and the fingerprint) set on the version."""
    import mlflow
    import mlflow.pyfunc
    from mlflow import MlflowClient

    client = MlflowClient()
    sha = fingerprint(model_dir)
    existing = find_existing(client, name, run_id, sha)
    if existing is not None:
        log.info("model already registered as %s version %s: reusing it", name, existing.version)
        return Registered(name, str(existing.version), f"models:/{name}/{existing.version}", run_id, sha, True)

    all_tags = {**tags, "fingerprint": sha}
    with tempfile.TemporaryDirectory() as code:   # hfclf/ with only the modules the model runs
        library = bundle.copy_library(CODE_FILES, Path(code))
        info = mlflow.pyfunc.log_model(
            name=artifact_name, python_model=str(library / "ship" / "pyfunc_model.py"),
            artifacts={"model": str(model_dir)}, code_paths=[str(library)],
            signature=signature(label_sets.is_multi_label(read_meta(model_dir))),
            pip_requirements=pip_requirements(), registered_model_name=name, tags=all_tags,
            await_registration_for=60)
    version = str(info.registered_model_version)
    if metrics:  # shown on the logged model's page in the MLflow UI, next to the registered version
        mlflow.log_metrics(metrics, model_id=info.model_id)
    for key, value in all_tags.items():
        client.set_model_version_tag(name, version, key, value)
    client.update_model_version(name, version, description=description)
    log.info("registered %s version %s (%s)", name, version, info.model_uri)
    return Registered(name, version, f"models:/{name}/{version}", run_id, sha, False)


def read_meta(model_dir: Path) -> dict:
    return json.loads((model_dir / "classifier.json").read_text(encoding="utf-8"))


def decision_tags(meta: dict) -> dict[str, str]:
    """How the version decides: the abstain threshold, or (multi-label) the task and per-label thresholds."""
    if not label_sets.is_multi_label(meta):
        return {"abstain_threshold": str(meta.get("abstain_threshold"))}
    thresholds = [round(float(t), 4) for t in meta.get("thresholds") or []]
    shown = json.dumps(dict(zip(meta.get("labels", []), thresholds)), ensure_ascii=False)
    too_long = len(shown) > MAX_TAG_CHARS   # hundreds of labels: the model's classifier.json holds them all
    return {"task": label_sets.MULTI, "thresholds": "in classifier.json (too many to tag)" if too_long else shown}


def summary_line(meta: dict) -> str:
    """The description's first line: what kind of classifier, over how many labels, from which base model."""
    kind = (f"multi-label text classifier over {len(meta.get('labels', []))} labels"
            if label_sets.is_multi_label(meta) else f"{len(meta.get('labels', []))}-class text classifier")
    return f"{kind} fine-tuned from `{meta.get('base_model')}`."


def as_dict(registered: Registered) -> dict:
    return asdict(registered)


# --------------------------------------------------------------------------- the stage

@stage("register")
def main(cfg: DictConfig) -> None:
    model_dir, reports = Path(cfg.paths.model_dir), Path(cfg.paths.reports)
    metrics_path = reports / "metrics.json"
    if not metrics_path.exists():
        raise UserError(f"'{metrics_path}' is missing: run `make evaluate` before registering the model.")
    if not (model_dir / WEIGHTS).exists():
        raise UserError(f"'{model_dir / WEIGHTS}' is missing: run `make train` first.")
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    meta = read_meta(model_dir)
    # the same grouped names as the run's metrics (test/accuracy, test/macro_f1, test/macro_f1_ci_low ...)
    headline = {f"test/{k}": f"{v:.4f}" for k, v in metrics.items() if isinstance(v, float)}
    tags = {**headline, "git_commit": tracking.git_commit(), "data_fingerprint": str(meta.get("data_fingerprint")),
            "base_model": str(meta.get("base_model")), **decision_tags(meta)}
    with tracking.model_run(cfg, model_dir) as run:
        # the version links back to its run (its run_id; the run's name, id and commit in tags and description)
        run_name = run.info.run_name or run.info.run_id
        tags |= {"mlflow_run_id": run.info.run_id, "mlflow_run_name": run_name}
        description = "\n".join([
            summary_line(meta), "",
            f"Trained in MLflow run **{run_name}** (`{run.info.run_id}`), git `{tags['git_commit']}`, "
            f"data fingerprint `{tags['data_fingerprint']}`.", "",
            "Test: " + ", ".join(f"{k.removeprefix('test/')} {v}" for k, v in headline.items())])
        numbers = {f"test/{k}": float(v) for k, v in metrics.items() if isinstance(v, float)}
        result = register(model_dir, cfg.register.name, run.info.run_id, tags, description,
                                   cfg.register.artifact_name, numbers)
        import mlflow

        mlflow.set_tags({"registered_model": result.name, "registered_version": result.version})
    write_json(reports / "registry.json", as_dict(result))
    log.info("%s %s as %s", "reused" if result.reused else "registered", result.model_uri, result.name)
