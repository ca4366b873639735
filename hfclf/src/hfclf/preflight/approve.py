"""approve: record approval of the current training plan (`make approve`; not a DVC stage).

Prints reports/training_plan.md and writes reports/plan_approval.json with its SHA-256, who and
when, and marks reports/gates/plan.json approved (the first approval of these settings makes DVC
re-run `train`, whose MLflow run records it; re-approving a re-measured plan changes nothing). With plan.require_approval=true, `train` runs only while that hash matches the plan.
"""
import logging
import sys
from pathlib import Path

from omegaconf import DictConfig

from hfclf.data import processed
from hfclf.preflight import plan
from hfclf.infra.cli import stage
from hfclf.infra.errors import UserError

log = logging.getLogger(__name__)


@stage("plan")
def main(cfg: DictConfig) -> None:
    reports = Path(cfg.paths.reports)
    on_disk = plan.load_plan(reports)
    if on_disk is None:
        raise UserError(f"'{reports / plan.PLAN_JSON}' is missing: run `make plan` first.")
    current = plan.plan_settings(cfg, processed.read_labels(Path(cfg.paths.processed))["fingerprint"])
    stale = [key for key, value in current.items() if on_disk["settings"].get(key) != value]
    if stale:
        raise UserError(f"the plan on disk is stale ({', '.join(stale)} changed): run `make plan`, then approve.")
    sys.stdout.write((reports / plan.PLAN_MD).read_text(encoding="utf-8") + "\n")
    record = plan.approve(reports, on_disk["settings"])
    plan.write_gate(reports, on_disk)   # the gate train depends on now says approved
    log.info("approved by %s at %s: sha256 %s -> %s", record["approved_by"], record["approved_at"],
             record["plan_sha256"][:12], reports / plan.APPROVAL)
