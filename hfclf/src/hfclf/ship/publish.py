"""publish: dist/model/ (and optionally the demo as a Space, space.py) to the Hugging Face Hub -
never by surprise.

    make publish                                  # dry run: repo id, visibility, every file and its size
    make publish HUB_REPO=my-org/ticket-router    # + HF_TOKEN (or `hf auth login`): create repo, upload, one commit
    make publish HUB_REPO=... HUB_SPACE=my-org/ticket-router-demo   # also the Gradio demo as a Space

`plan` says exactly what would happen: repo id, visibility, every file and its size. Without a
repo id or a token that plan is all there is (a dry run). With both, `push` creates the repo if
needed and uploads the folder in **one** commit whose message names the git commit; files the
Hub already has unchanged are skipped, so a re-run is a no-op. Nothing local is ever deleted.
The Space's README says what the demo answers: a label, or (a multi-label model) a label set.

A real push is recorded in reports/publish.json and on the model's MLflow run and registered
version (repo, commit). The token is only handed to huggingface_hub: it is never printed, logged,
written to a report, an MLflow tag or the card, and it is masked out of any error message.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from hfclf.data import multilabel as label_sets
from hfclf.infra import files, tracking
from hfclf.infra.cli import stage
from hfclf.infra.errors import UserError
from hfclf.infra.render import write_json
from hfclf.ship import bundle, space

log = logging.getLogger(__name__)


@dataclass
class Target:
    repo_id: str
    repo_type: str              # model | space
    private: bool
    folder: Path
    files: list[tuple[str, int]] = field(default_factory=list)   # (path in repo, bytes)

    @property
    def total_bytes(self) -> int:
        return sum(size for _, size in self.files)


@dataclass
class Plan:
    model: Target
    space: Target | None
    commit_message: str
    commit_description: str
    token_source: str | None    # where the token came from (never the token itself)
    dry_run_reason: str | None  # None = this plan will be pushed


def is_multi_label(model_dir: Path) -> bool:
    """Whether the staged model predicts label sets (its classifier.json's task)."""
    meta_path = model_dir / "classifier.json"
    return meta_path.exists() and label_sets.is_multi_label(json.loads(meta_path.read_text(encoding="utf-8")))


def resolve_token() -> tuple[str | None, str | None]:
    """(token, where it came from): HF_TOKEN, else the session `hf auth login` stored."""
    if os.environ.get("HF_TOKEN", "").strip():
        return os.environ["HF_TOKEN"].strip(), "HF_TOKEN"
    from huggingface_hub import get_token

    token = get_token()
    return (token, "logged-in session (hf auth login)") if token else (None, None)


def check_repo_id(repo_id: str, what: str, variable: str) -> str:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    repo_id = repo_id.strip()
    try:
        validate_repo_id(repo_id)
        if repo_id.count("/") != 1:
            raise HFValidationError("it must name the owner: owner/name")
    except HFValidationError as err:
        reason = str(err).strip().splitlines()[0].rstrip(".")
        raise UserError(f"'{repo_id}' is not a valid {what} repo id ({reason}). Set {variable} to owner/name, "
                        "e.g. my-org/support-ticket-classifier.") from None
    return repo_id


def list_files(folder: Path) -> list[tuple[str, int]]:
    return sorted((p.relative_to(folder).as_posix(), p.stat().st_size) for p in folder.rglob("*") if p.is_file())


def human(size: int) -> str:
    """Decimal units, as the Hub shows file sizes."""
    for unit in ("B", "kB", "MB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def retarget_card(folder: Path, repo_id: str) -> bool:
    """Make the staged card's usage snippet name `repo_id` (written atomically); True if it changed."""
    readme = folder / bundle.CARD_FILE
    text = readme.read_text(encoding="utf-8")
    new = bundle.retarget(text, repo_id)
    if new == text:
        return False
    files.write_text(readme, new)
    return True


def build_plan(model_dir: Path, repo_id: str | None, private: bool, space_id: str | None, space_private: bool,
               space_dir: Path, git_commit: str, registry: dict | None, model_name: str, force_dry_run: bool,
               space_builder=None) -> Plan:
    """Stage what would be uploaded (card retargeted, Space generated) and describe it."""
    if not (model_dir / bundle.CARD_FILE).exists() or not (model_dir / "model.safetensors").exists():
        raise UserError(f"'{model_dir}' is not a staged model (no {bundle.CARD_FILE} / model.safetensors): "
                        "run `make card` first.")
    token, source = resolve_token()
    if repo_id:
        repo_id = check_repo_id(repo_id, "model", "HUB_REPO (or hub_repo.repo_id in conf/hub_repo/default.yaml)")
        if retarget_card(model_dir, repo_id):
            log.info("the card's usage snippet now names %s", repo_id)
    if space_id:
        space_id = check_repo_id(space_id, "Space", "HUB_SPACE (or hub_repo.space_repo_id)")
        if not repo_id:
            raise UserError("a Space loads the model from its Hub repo: set HUB_REPO (or hub_repo.repo_id) too.")
        space_builder(space_dir, repo_id)
    reason = None
    if force_dry_run:
        reason = "dry run requested (DRY_RUN=1 / publish.dry_run=true)"
    elif not repo_id:
        reason = "no target repo: pass HUB_REPO=owner/name (or set hub_repo.repo_id in conf/hub_repo/default.yaml)"
    elif not token:
        reason = "no Hugging Face token: set HF_TOKEN or run `hf auth login`"
    short = git_commit[:12] if git_commit != "unknown" else "unknown"
    message = f"Upload {model_name} from git commit {short}"
    description = [f"git commit: {git_commit}"]
    if registry:
        description.append(f"MLflow registered model: {registry['name']} version {registry['version']} "
                           f"({registry['model_uri']})")
    model = Target(repo_id or "(not set)", "model", private, model_dir, list_files(model_dir))
    space = Target(space_id, "space", space_private, space_dir, list_files(space_dir)) if space_id else None
    return Plan(model, space, message, "\n".join(description), source, reason)


def describe(plan: Plan) -> str:
    """The plan as printed: repo, visibility, every file with its size, and what happens next."""
    lines = ["DRY RUN - nothing will be uploaded." if plan.dry_run_reason else "PUBLISHING to the Hugging Face Hub."]
    if plan.dry_run_reason:
        lines.append(f"Why: {plan.dry_run_reason}.")
    for target in filter(None, (plan.model, plan.space)):
        lines += ["", f"{target.repo_type} repo: {target.repo_id}",
                  f"visibility: {'private' if target.private else 'public'} (if created now; an existing repo keeps its own)",
                  f"folder: {target.folder}/ ({len(target.files)} files, {human(target.total_bytes)})"]
        width = max(len(name) for name, _ in target.files)
        lines += [f"  {name:<{width}}  {size:>12,} B  {human(size):>9}" for name, size in target.files]
    lines += ["", f"commit message: {plan.commit_message}",
              f"token: {plan.token_source or 'none found'}"]
    return "\n".join(lines)


def _mask(text: str, token: str | None) -> str:
    return text.replace(token, "***") if token else text


def _http_error(err: Exception, repo_id: str, token: str | None) -> UserError:
    """One clear line for whatever the Hub (or the network) answered."""
    status = getattr(getattr(err, "response", None), "status_code", None)
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    hints = {401: "the token is invalid or expired: create a write token at https://huggingface.co/settings/tokens",
             402: "the Hub asks for a paid plan or hardware (Gradio Spaces on free hardware need one): publish without HUB_SPACE",
             403: f"the token may not write to '{repo_id.split('/')[0]}': use a write token of a member of that namespace",
             404: "the repo was not found (a private repo of someone else looks the same)",
             429: "the Hub is rate-limiting: wait and re-run `make publish`"}
    hint = hints.get(status, "check the repo id, the token and your connection, then re-run `make publish`")
    where = f"HTTP {status}" if status else type(err).__name__
    return UserError(_mask(f"publishing to '{repo_id}' failed ({where}: {first}); {hint}. Nothing local was deleted.", token))


def upload(target: Target, token: str, message: str, description: str, space_sdk: str | None = None) -> dict:
    """Create the repo if needed and upload the folder as one commit; unchanged files are skipped."""
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(token=token)
    repo_type = None if target.repo_type == "model" else target.repo_type
    url = api.create_repo(target.repo_id, repo_type=repo_type, private=target.private, exist_ok=True,
                          space_sdk=space_sdk)
    before = api.repo_info(target.repo_id, repo_type=repo_type).sha
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(target.folder / name))
                  for name, _ in target.files]
    info = api.create_commit(target.repo_id, operations, repo_type=repo_type, commit_message=message,
                             commit_description=description)
    return {"repo_id": target.repo_id, "repo_type": target.repo_type, "url": str(url), "commit": info.oid,
            "commit_url": info.commit_url, "changed": info.oid != before,
            "files": [name for name, _ in target.files]}


def push(plan: Plan) -> list[dict]:
    """Upload the model (then the Space) as planned. Raises UserError on any Hub / network failure."""
    from huggingface_hub.errors import HfHubHTTPError

    token, _ = resolve_token()
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        raise UserError("HF_HUB_OFFLINE is set, so nothing can be uploaded: unset it to publish "
                        "(the dry run above shows what would be sent).")
    results = []
    for target, sdk in ((plan.model, None), (plan.space, "gradio")):
        if target is None:
            continue
        try:
            results.append(upload(target, token, plan.commit_message, plan.commit_description, sdk))
        except HfHubHTTPError as err:
            raise _http_error(err, target.repo_id, token) from None
        except (OSError, ValueError, RuntimeError) as err:   # connection refused, DNS, malformed answers
            raise _http_error(err, target.repo_id, token) from None
        except Exception as err:  # httpx transport errors and the like: still one line, never the token
            if type(err).__module__.startswith(("httpx", "httpcore", "requests", "urllib3")):
                raise _http_error(err, target.repo_id, token) from None
            raise
    return results


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
        from hfclf.ship import demo  # gradio: imported only when a Space is asked for

        examples = demo.examples_from(reports / "predictions.csv", demo_settings["examples"])
        space.build_space(space_dir, model_repo, demo_settings, examples, card_settings.model_name,
                          card_settings.license, is_multi_label(Path(cfg.publish.model_dir)))

    plan = build_plan(
        Path(cfg.publish.model_dir), repo_id, cfg.hub_repo.private, space_id, cfg.hub_repo.space_private,
        Path(cfg.publish.space_dir), tracking.git_commit(), registry, card_settings.model_name, dry,
        space_builder)
    print(describe(plan), flush=True)
    if plan.dry_run_reason:
        if os.environ.get("HUB_REPO", "").strip() and not dry:  # a push was asked for: say why it cannot happen
            raise UserError(f"nothing was uploaded: {plan.dry_run_reason}.")
        print("\nTo publish: make publish HUB_REPO=owner/name with HF_TOKEN set (or after `hf auth login`).")
        return
    results = push(plan)
    for result in results:
        state = "uploaded" if result["changed"] else "already up to date (no new commit)"
        print(f"{result['repo_type']} {result['repo_id']}: {state} - {result['commit_url']}", flush=True)
    record(cfg, results, registry)
