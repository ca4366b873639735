"""use-dataset: pin a Hub dataset as the project's data, after checking it has the named columns.

Writes source, revision (the commit sha seen now), subset and columns into conf/data/default.yaml,
keeping its comments; that file is a DVC param of prepare, so the next `make all` runs on the new data.
"""
import logging
from pathlib import Path

from omegaconf import DictConfig

from hfclf.infra import config_edit
from hfclf.research import candidates, hub
from hfclf.infra.cli import stage
from hfclf.infra.errors import UserError

log = logging.getLogger(__name__)
USAGE = "make use-dataset ID=owner/name LABEL=<column> [TEXT=<column>] [SUBSET=<name>] [REVISION=<rev>]"


@stage("use_dataset")
def main(cfg: DictConfig) -> None:
    opts = cfg.use_dataset
    repo_id, label = str(opts.id or "").strip(), str(opts.label_column or "").strip()
    if not repo_id or not label:
        raise UserError(f"{'ID' if not repo_id else 'LABEL'} is missing: run `{USAGE}`.")
    hub.require_online("use-dataset")
    api = hub.connect(cfg.research.timeout_seconds)
    info = hub.dataset_info(api, repo_id, opts.revision, timeout=cfg.research.timeout_seconds)
    cand = candidates.describe(info, cfg.research, subset=opts.subset)
    subset = check_subset(cand, opts.subset)
    if not cand.columns:
        peek = candidates.file_to_peek(info)
        if peek:
            head = hub.read_head(repo_id, info.sha, peek, cfg.research.peek_bytes, cfg.research.timeout_seconds)
            cand = candidates.describe(info, cfg.research, subset=subset, head=(peek, head))
    text = str(opts.text_column or "").strip() or None
    if cand.columns:
        text = text or (cfg.data.text_column if cfg.data.text_column in cand.columns else cand.text_column)
        missing = [c for c in (label, text) if c is not None and c not in cand.columns]
        if missing:
            raise UserError(f"dataset '{repo_id}' has no column {', '.join(repr(m) for m in missing)}. Its columns "
                            f"(from {cand.columns_from}) are: {', '.join(cand.columns)}. Pass LABEL= / TEXT= "
                            "with one of them.")
        if text is None:
            raise UserError(f"dataset '{repo_id}': no obvious text column among {', '.join(cand.columns)}; "
                            "pass TEXT=<column>.")
    else:
        text = text or cfg.data.text_column
        log.warning("the columns of '%s' are not described by its card or a readable CSV/JSONL file: '%s' and "
                    "'%s' could not be checked now; prepare checks them when it reads the data.", repo_id, text, label)

    path = Path(opts.data_config)
    config_edit.set_values(path, {"source": repo_id, "revision": info.sha, "subset": subset,
                                  "text_column": text, "label_column": label})
    print(f"{path}: {repo_id} at revision {info.sha} (subset {subset or 'default'}), text '{text}', "
          f"label '{label}'{_classes(cand, label)}.")
    for flag in cand.flags:
        if flag not in {"no text column", "no label column"}:
            print(f"note: {flag}" + (f" - see {hub.endpoint()}/datasets/{repo_id}" if "licence" in flag else ""))
    print("Next: `make all` (prepare sees the new params and re-runs, and so does everything after it). "
          f"Commit {path} to keep the choice.")


def check_subset(cand: candidates.Candidate, subset: str | None) -> str | None:
    if subset and cand.subsets and subset not in cand.subsets:
        raise UserError(f"dataset '{cand.id}' has no subset '{subset}'; its subsets are: {', '.join(cand.subsets)}.")
    if not subset and len(cand.subsets) > 1 and "default" not in cand.subsets:
        raise UserError(f"dataset '{cand.id}' has {len(cand.subsets)} subsets ({', '.join(cand.subsets)}): "
                        "pass SUBSET=<name>.")
    return subset or cand.subset


def _classes(cand: candidates.Candidate, label: str) -> str:
    n = cand.classes.get(label)
    return f" ({n} classes)" if n and cand.columns.get(label) == "class_label" else ""
