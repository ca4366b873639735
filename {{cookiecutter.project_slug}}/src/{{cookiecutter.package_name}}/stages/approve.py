"""approve: record approval of the current training plan (`make approve`; not a DVC stage).

Prints reports/training_plan.md and writes reports/plan_approval.json with its SHA-256, who and
when. With plan.require_approval=true, `train` runs only while that hash matches the plan.
"""
import logging
import sys
from pathlib import Path

from omegaconf import DictConfig

from .. import data, planning
from ..cli import stage
from ..errors import UserError

log = logging.getLogger(__name__)


@stage("plan")
def main(cfg: DictConfig) -> None:
    reports = Path(cfg.paths.reports)
    plan = planning.load_plan(reports)
    if plan is None:
        raise UserError(f"'{reports / planning.PLAN_JSON}' is missing: run `make plan` first.")
    current = planning.plan_settings(cfg, data.read_labels(Path(cfg.paths.processed))["fingerprint"])
    stale = [key for key, value in current.items() if plan["settings"].get(key) != value]
    if stale:
        raise UserError(f"the plan on disk is stale ({', '.join(stale)} changed): run `make plan`, then approve.")
    sys.stdout.write((reports / planning.PLAN_MD).read_text(encoding="utf-8") + "\n")
    record = planning.approve(reports)
    log.info("approved by %s at %s: sha256 %s -> %s", record["approved_by"], record["approved_at"],
             record["plan_sha256"][:12], reports / planning.APPROVAL)


if __name__ == "__main__":
    main()
