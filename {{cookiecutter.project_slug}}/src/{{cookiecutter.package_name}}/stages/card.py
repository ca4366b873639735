"""card: write the model card and stage dist/model/, the folder `make publish` uploads.

Reads the model folder, the reports of prepare/train/evaluate/register (and of review/analyze
when they exist) and dvc.lock; validates the card's metadata; logs the card into the model's
MLflow run. Output: dist/model/ (README.md, weights, config, tokenizer, labels.json,
classifier.json, confusion_matrix.png).
"""
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from .. import card, tracking
from ..cli import stage
from ..errors import UserError

log = logging.getLogger(__name__)


def card_settings(cfg: DictConfig) -> dict:
    settings = OmegaConf.to_container(cfg.card, resolve=True)
    settings.update(dataset=cfg.data.source, text_column=cfg.data.text_column, label_column=cfg.data.label_column)
    return settings


def repo_id(cfg: DictConfig) -> str:
    """The repo the card's snippet names: hub_repo.repo_id (conf/hub_repo/default.yaml) when set, else a placeholder."""
    return cfg.hub_repo.repo_id or card.REPO_PLACEHOLDER


@stage("card")
def main(cfg: DictConfig) -> None:
    import mlflow

    model_dir, reports, out_dir = Path(cfg.paths.model_dir), Path(cfg.paths.reports), Path(cfg.card.out_dir)
    tracking.configure(cfg)
    run_id = tracking.load_run_id(model_dir)
    try:
        params = mlflow.MlflowClient().get_run(run_id).data.params   # the hyperparameters the model was trained with
    except Exception as err:
        raise UserError(f"MLflow run {run_id} of '{model_dir}' is not in the store at {tracking.tracking_uri(cfg)} "
                        f"({str(err).splitlines()[0]}). Re-run `make train` with this store.") from None
    inputs = card.gather(model_dir, reports, Path("dvc.lock"), params, tracking.git_commit(), run_id)
    model_card = card.build(inputs, card_settings(cfg), repo_id(cfg))
    problems = card.validate(model_card)
    if problems:
        raise UserError("the model card's metadata is invalid: " + "; ".join(problems) +
                        ". Fix the values in conf/card.yaml (licence, language) and re-run `make card`.")
    files = card.stage(model_dir, out_dir, str(model_card), Path(cfg.paths.figures) / "confusion_matrix_normalized.png")
    with tracking.model_run(cfg, model_dir):
        mlflow.log_text(str(model_card), "model_card/README.md")
        mlflow.set_tag("model_card", "model_card/README.md")
    log.info("staged %s: %s", out_dir, ", ".join(f.name for f in files))


if __name__ == "__main__":
    main()
