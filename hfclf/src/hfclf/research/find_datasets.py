"""find-datasets: search the Hugging Face Hub for datasets that could train the classifier.

Not a DVC stage (it depends on the Hub's state at the moment you ask). Writes
reports/dataset_candidates.{md,json} and prints the table; `make use-dataset` pins the one you pick.
"""
import logging
from datetime import datetime, timezone
from pathlib import Path

from omegaconf import DictConfig

from hfclf.research import hub, shortlist
from hfclf.research.candidates import find as find_candidates
from hfclf.infra import files
from hfclf.infra.cli import stage
from hfclf.infra.errors import UserError
from hfclf.infra.render import md_table, write_json

log = logging.getLogger(__name__)


@stage("find_datasets")
def main(cfg: DictConfig) -> None:
    opts = cfg.find_datasets
    query = str(opts.query or "").strip()
    if not query:
        raise UserError('no search words: run `make find-datasets QUERY="customer support tickets"` '
                        "(or set find_datasets.query).")
    hub.require_online("find-datasets")
    api = hub.connect(cfg.research.timeout_seconds)
    candidates = find_candidates(api, query, opts.task, opts.sort, int(opts.limit), cfg.research)

    reports = Path(cfg.paths.reports)
    files.write_text(reports / "dataset_candidates.md",
                     shortlist.markdown(candidates, query, opts.task, opts.sort, hub.endpoint()))
    write_json(reports / "dataset_candidates.json", {
        "query": query, "task": opts.task, "sort": opts.sort, "limit": int(opts.limit), "endpoint": hub.endpoint(),
        "searched_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "candidates": [c.to_dict() for c in candidates]})

    if not candidates:
        print(f'No dataset on {hub.endpoint()} matches "{query}"{f" with task {opts.task}" if opts.task else ""}: '
              "try fewer or other words.")
        return
    print(md_table(shortlist.TABLE_HEADER, shortlist.table_rows(candidates)))
    print(f"\n{len(candidates)} candidates -> {reports / 'dataset_candidates.md'} (columns, splits, flags, "
          "and the `make use-dataset` line for each)")
    flagged = sum(1 for c in candidates if c.flags)
    if flagged:
        print(f"{flagged} flagged: check the licence and columns before you pick one of those.")
