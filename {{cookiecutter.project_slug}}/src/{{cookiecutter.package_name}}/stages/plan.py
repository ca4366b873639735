"""plan: the training plan - sizes, model, max_length, schedule, device, estimated time against the
budget, and the risks found by review - made before any real compute is spent.

Outputs: reports/training_plan.{md,json}. `make approve` records approval of this exact plan.
"""
import json
import logging
from pathlib import Path

from omegaconf import DictConfig

from .. import data, planning
from ..cli import stage
from ..errors import UserError
from ..reports import write_json

log = logging.getLogger(__name__)


def read_report(reports: Path, name: str, stage_name: str) -> dict:
    path = reports / name
    if not path.exists():
        raise UserError(f"'{path}' is missing: run `make {stage_name}` (or `dvc repro {stage_name}`) first.")
    return json.loads(path.read_text(encoding="utf-8"))


@stage("plan")
def main(cfg: DictConfig) -> None:
    reports = Path(cfg.paths.reports)
    fingerprint = data.read_labels(Path(cfg.paths.processed))["fingerprint"]
    profile = read_report(reports, "data_profile.json", "prepare")
    review = read_report(reports, "review.json", "review")
    smoke = read_report(reports, "smoke.json", "smoke")
    plan = planning.make_plan(cfg, profile, review, smoke, fingerprint)
    markdown = planning.plan_markdown(plan)
    plan["plan_sha256"] = planning.digest(markdown)
    (reports / planning.PLAN_MD).write_text(markdown, encoding="utf-8")
    write_json(reports / planning.PLAN_JSON, plan)
    for risk in plan["risks"]:
        log.warning("risk: %s", risk)
    e = plan["estimate"]
    log.info("plan: %d steps on %s, about %.1f min (budget %s min: %s)%s", plan["training"]["total_steps"],
             plan["compute"]["device"], e["total_minutes"], e["budget_minutes"],
             "fits" if e["fits_budget"] else "does NOT fit",
             "; plan.require_approval=true: read it, then `make approve`" if cfg.plan.require_approval else "")


if __name__ == "__main__":
    main()
