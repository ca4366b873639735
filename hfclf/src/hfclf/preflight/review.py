"""review: check the prepared splits before any compute is spent on them.

Outputs: reports/review.{json,md}. Fails (exit 2, after writing the report) on severe leakage
between splits unless review.allow_leakage=true; every other finding is a risk the plan repeats.
"""
import json
import logging
from pathlib import Path

from omegaconf import DictConfig

from hfclf.data import dataset
from hfclf.preflight import checks
from hfclf.infra.cli import stage
from hfclf.infra import files
from hfclf.infra.errors import UserError
from hfclf.infra.render import write_json
from hfclf.infra.settings import from_section
from hfclf.train import lengths

log = logging.getLogger(__name__)


def token_counter(model_name: str):
    """Count tokens with the base model's tokenizer, loaded only if some text could be too long."""
    def count(texts: list[str]) -> list[int]:
        from hfclf.train import bert_tokenizer
        from hfclf.train.modeling import resolve_model

        tokenizer = bert_tokenizer.load(resolve_model(model_name)[0])
        return [len(ids) for ids in tokenizer(texts, truncation=False, return_attention_mask=False)["input_ids"]]
    return count


@stage("review")
def main(cfg: DictConfig) -> None:
    processed, reports = Path(cfg.paths.processed), Path(cfg.paths.reports)
    splits = {name: dataset.read_split(processed, name) for name in dataset.SPLITS}
    profile_path = reports / "data_profile.json"
    profile = json.loads(profile_path.read_text(encoding="utf-8")) if profile_path.exists() else {}
    split_info = profile.get("split", {})
    settings = from_section(checks.ReviewSettings, cfg.review, "review", seed=cfg.compute.seed)
    labels_path = processed / "labels.json"   # the task is prepare's record, never the config
    labels_info = json.loads(labels_path.read_text(encoding="utf-8")) if labels_path.exists() else {}
    # model.max_length=auto: the data's length (train/lengths.py); the plan may keep less for the budget
    max_length = lengths.data_length(cfg.model.max_length, profile.get("text_tokens"))
    result = checks.review(splits, settings, max_length, token_counter(cfg.model.name),
                           labels_info.get("task", "single_label"))
    result["split"] = split_info
    write_json(reports / "review.json", result)
    files.write_text(reports / "review.md", checks.review_markdown(result))
    for risk in result["risks"]:
        log.warning("risk: %s", risk)
    if result["verdict"] == "fail":
        raise UserError(checks.leakage_error(result, split_info))
    if settings.fail_on_label_variants and result["label_variants"]:
        groups = "; ".join(" / ".join(repr(label) for label in group) for group in result["label_variants"])
        raise UserError(f"review found labels that differ only by case, spacing or number format: {groups}. "
                        "Make each class one spelling in the data, or set review.fail_on_label_variants=false.")
    if result["verdict"] == "leakage allowed":
        log.warning("severe leakage allowed by review.allow_leakage=true: test scores will be optimistic")
    log.info("review %s: %d risks, details in %s", result["verdict"], len(result["risks"]), reports / "review.md")
