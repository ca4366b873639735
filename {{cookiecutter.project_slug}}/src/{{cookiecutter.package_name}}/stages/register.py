"""register: the trained model into the MLflow model registry, with its test metrics.

Logs models/model as a pyfunc model (registry.TicketClassifier) into the model's MLflow run and
registers it under `register.name`; re-running on the same weights reuses the version.
Output: reports/registry.json (name, version, models:/ URI) that `card` and `publish` record.
"""
import json
import logging
from pathlib import Path

from omegaconf import DictConfig

from .. import registry, tracking
from ..cli import stage
from ..errors import UserError
from ..reports import write_json

log = logging.getLogger(__name__)


@stage("register")
def main(cfg: DictConfig) -> None:
    model_dir, reports = Path(cfg.paths.model_dir), Path(cfg.paths.reports)
    metrics_path = reports / "metrics.json"
    if not metrics_path.exists():
        raise UserError(f"'{metrics_path}' is missing: run `make evaluate` before registering the model.")
    if not (model_dir / registry.WEIGHTS).exists():
        raise UserError(f"'{model_dir / registry.WEIGHTS}' is missing: run `make train` first.")
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    meta = json.loads((model_dir / "classifier.json").read_text(encoding="utf-8"))
    headline = {f"test_{k}": f"{v:.4f}" for k, v in metrics.items() if isinstance(v, float)}
    tags = {**headline, "git_commit": tracking.git_commit(), "data_fingerprint": str(meta.get("data_fingerprint")),
            "base_model": str(meta.get("base_model")), "abstain_threshold": str(meta.get("abstain_threshold"))}
    description = (f"{len(meta.get('labels', []))}-class text classifier fine-tuned from {meta.get('base_model')}; "
                   + ", ".join(f"{k} {v}" for k, v in headline.items()))
    with tracking.model_run(cfg, model_dir) as run:
        numbers = {f"test_{k}": float(v) for k, v in metrics.items() if isinstance(v, float)}
        result = registry.register(model_dir, cfg.register.name, run.info.run_id, tags, description,
                                   cfg.register.artifact_name, numbers)
        import mlflow

        mlflow.set_tags({"registered_model": result.name, "registered_version": result.version})
    write_json(reports / "registry.json", registry.as_dict(result))
    log.info("%s %s as %s", "reused" if result.reused else "registered", result.model_uri, result.name)


if __name__ == "__main__":
    main()
