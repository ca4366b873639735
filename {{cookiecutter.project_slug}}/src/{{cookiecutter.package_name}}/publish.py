"""`python -m {{ cookiecutter.package_name }}.publish` (or `make publish`): print the upload plan, push only
with a target repo and a token.

    make publish                                  # dry run: repo id, visibility, every file and its size
    make publish HUB_REPO=my-org/ticket-router    # + HF_TOKEN (or `hf auth login`): create repo, upload, one commit
    make publish HUB_REPO=... HUB_SPACE=my-org/ticket-router-demo   # also the Gradio demo as a Space

A real push is recorded in reports/publish.json and on the model's MLflow run and registered
version (repo, commit) - never the token.
"""
import json
import logging
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from . import publishing, tracking
from .cli import stage
from .errors import UserError
from .reports import write_json

log = logging.getLogger(__name__)


def record(cfg: DictConfig, results: list[dict], registry: dict | None) -> None:
    import mlflow
    from mlflow import MlflowClient

    write_json(Path(cfg.paths.reports) / "publish.json",
               {"git_commit": tracking.git_commit(), "registered_model": registry, "pushed": results})
    model = next(r for r in results if r["repo_type"] == "model")
    tags = {"hub_repo": model["repo_id"], "hub_commit": model["commit"], "hub_commit_url": model["commit_url"]}
    with tracking.model_run(cfg, Path(cfg.paths.model_dir)):
        mlflow.set_tags(tags)
    if registry:
        client = MlflowClient()
        for key, value in tags.items():
            client.set_model_version_tag(registry["name"], registry["version"], key, value)


@stage("publish")
def main(cfg: DictConfig) -> None:
    reports = Path(cfg.paths.reports)
    registry_path = reports / "registry.json"
    registry = json.loads(registry_path.read_text(encoding="utf-8")) if registry_path.exists() else None
    repo_id = os.environ.get("HUB_REPO", "").strip() or cfg.hub_repo.repo_id or None
    space_id = os.environ.get("HUB_SPACE", "").strip() or cfg.hub_repo.space_repo_id or None
    dry = cfg.publish.dry_run or os.environ.get("DRY_RUN", "").strip().lower() in {"1", "true", "yes"}
    demo_settings = OmegaConf.to_container(OmegaConf.load("conf/demo.yaml").demo, resolve=True)
    card_settings = OmegaConf.load("conf/card.yaml").card   # the model's name and licence, as the card states them

    def space_builder(space_dir: Path, model_repo: str) -> None:
        from . import demo  # gradio: imported only when a Space is asked for

        examples = demo.examples_from(reports / "predictions.csv", demo_settings["examples"])
        publishing.build_space(space_dir, model_repo, Path(publishing.__file__).parent, __package__,
                               demo_settings, examples, card_settings.model_name, card_settings.license)

    plan = publishing.build_plan(
        Path(cfg.publish.model_dir), repo_id, cfg.hub_repo.private, space_id, cfg.hub_repo.space_private,
        Path(cfg.publish.space_dir), tracking.git_commit(), registry, card_settings.model_name, dry,
        space_builder)
    print(publishing.describe(plan), flush=True)
    if plan.dry_run_reason:
        if os.environ.get("HUB_REPO", "").strip() and not dry:  # a push was asked for: say why it cannot happen
            raise UserError(f"nothing was uploaded: {plan.dry_run_reason}.")
        print("\nTo publish: make publish HUB_REPO=owner/name with HF_TOKEN set (or after `hf auth login`).")
        return
    results = publishing.push(plan)
    for result in results:
        state = "uploaded" if result["changed"] else "already up to date (no new commit)"
        print(f"{result['repo_type']} {result['repo_id']}: {state} - {result['commit_url']}", flush=True)
    record(cfg, results, registry)


if __name__ == "__main__":
    main()
