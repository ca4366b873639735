"""card: the model card, and dist/model/ - the folder `make publish` uploads - staged with it.

`gather` reads what the pipeline wrote (the model folder, the reports of prepare/train/evaluate/
register, and of review/analyze when they exist, dvc.lock); `build` turns that into a
`huggingface_hub.ModelCard`: metadata (hub_metadata.py, validated the way the Hub reads it) on top
of the Markdown written here, next to the data it describes; bundle.py writes the folder atomically.
A multi-label model (classifier.json `task: multi_label`) gets the same card with its own
sections from card_multilabel.py. The card is also logged into the model's MLflow run. Output:
dist/model/ (README.md, weights, config, tokenizer, labels.json, classifier.json, confusion_matrix.png).
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml
from omegaconf import DictConfig, OmegaConf

from hfclf.data import multilabel as label_sets
from hfclf.infra import tracking
from hfclf.infra.cli import stage
from hfclf.infra.errors import UserError
from hfclf.infra.render import md_table, pct
from hfclf.ship import bundle, card_multilabel, hub_metadata

log = logging.getLogger(__name__)

REPO_PLACEHOLDER = "<your-hub-username>/{project}"   # {project}: the project folder's name


@dataclass
class CardInputs:
    """Everything the card says, read from the pipeline's outputs."""
    meta: dict                      # models/model/classifier.json
    metrics: dict                   # reports/metrics.json
    per_class: dict                 # reports/per_class.json
    training: dict                  # reports/training.json
    profile: dict                   # reports/data_profile.json
    predictions: pd.DataFrame       # reports/predictions.csv
    params: dict = field(default_factory=dict)        # the training run's MLflow params
    registry: dict | None = None    # reports/registry.json
    baselines: dict | None = None   # name -> metrics, when an evaluation stage scored baselines
    failure_analysis: str | None = None   # reports/failure_analysis.md
    lock: dict = field(default_factory=dict)          # dvc.lock stages
    git_commit: str = "unknown"
    run_id: str | None = None


def _json(path: Path, required: bool, made_by: str) -> dict | None:
    if not path.exists():
        if required:
            raise UserError(f"'{path}' is missing: run `make {made_by}` (or `dvc repro {made_by}`) first.")
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def find_baselines(metrics: dict, reports: Path) -> dict | None:
    """Baseline scores wherever an evaluation stage put them: metrics.json or reports/baselines.json."""
    candidates = [metrics.get("baselines"), _json(reports / "baselines.json", False, "evaluate")]
    for found in candidates:
        if isinstance(found, dict) and "baselines" in found and isinstance(found["baselines"], (dict, list)):
            found = found["baselines"]
        if isinstance(found, list):   # [{"name": ..., "accuracy": ...}, ...]
            found = {str(item.get("name", i)): item for i, item in enumerate(found) if isinstance(item, dict)}
        if isinstance(found, dict) and found and all(isinstance(v, dict) for v in found.values()):
            return found
    return None


def gather(model_dir: Path, reports: Path, lock_file: Path, params: dict, git_commit: str,
           run_id: str | None) -> CardInputs:
    meta = _json(model_dir / "classifier.json", True, "train")
    predictions_path = reports / "predictions.csv"
    if not predictions_path.exists():
        raise UserError(f"'{predictions_path}' is missing: run `make evaluate` first.")
    metrics = _json(reports / "metrics.json", True, "evaluate")
    lock = yaml.safe_load(lock_file.read_text(encoding="utf-8")).get("stages", {}) if lock_file.exists() else {}
    failure = reports / "failure_analysis.md"
    return CardInputs(
        meta=meta, metrics=metrics, per_class=_json(reports / "per_class.json", True, "evaluate"),
        training=_json(reports / "training.json", True, "train"),
        profile=_json(reports / "data_profile.json", True, "prepare"),
        predictions=pd.read_csv(predictions_path), params=params,
        registry=_json(reports / "registry.json", False, "register"),
        baselines=find_baselines(metrics, reports),
        failure_analysis=failure.read_text(encoding="utf-8") if failure.exists() else None,
        lock=lock, git_commit=git_commit, run_id=run_id)


# --------------------------------------------------------------------------- the card's Markdown

def _hyperparameters(inputs: CardInputs) -> list[tuple[str, str]]:
    wanted = ["model.name", "model.max_length", "model.freeze_embeddings", "train.max_epochs", "train.batch_size",
              "train.learning_rate", "train.weight_decay", "train.warmup_ratio", "train.early_stopping_patience",
              "train.patience_window", "train.stop_at_score", "compute.seed", "compute.max_minutes"]
    rows = [(key, str(inputs.params[key])) for key in wanted if key in inputs.params]
    rows += sorted((k, str(v)) for k, v in inputs.params.items()
                   if k.startswith("train.augment") and k not in wanted)
    if not rows:  # no MLflow params: what the model folder itself records
        rows = [("model.max_length", str(inputs.meta.get("max_length")))]
    return rows


def _baselines_table(inputs: CardInputs, keys=("accuracy", "macro_f1"), names=("accuracy", "macro-F1")) -> str:
    """This model against the evaluation stage's baselines on `keys` (shown as `names`), and the margin."""
    rows = [("**this model**", *(float(inputs.metrics.get(k, float("nan"))) for k in keys))]
    for name, scores in inputs.baselines.items():
        rows.append((name, *(float(scores[k]) if isinstance(scores.get(k), (int, float)) else "-" for k in keys)))
    table = md_table(["model", *names], rows)
    margin, best = inputs.metrics.get("margin_over_best_baseline"), inputs.metrics.get("best_baseline")
    if isinstance(margin, dict) and best:
        table += ("\n\nMargin over the best baseline (" + str(best) + "): "
                  + ", ".join(f"{k.replace('_', '-')} {float(v):+.1f} points" for k, v in margin.items()))
    return table


def _confidence_intervals(metrics: dict) -> list[str]:
    """Lines for the confidence intervals an evaluation stage wrote: `<m>_ci_low` / `<m>_ci_high`,
    or `<m>_ci` as [low, high] or {"low", "high"}."""
    intervals = {}
    for key, value in metrics.items():
        if key.endswith("_ci_low") and f"{key[:-7]}_ci_high" in metrics:
            intervals[key[:-7]] = (value, metrics[f"{key[:-7]}_ci_high"])
        elif key.endswith("_ci") and isinstance(value, dict):
            intervals[key[:-3]] = (value.get("low"), value.get("high"))
        elif key.endswith("_ci") and isinstance(value, (list, tuple)) and len(value) == 2:
            intervals[key[:-3]] = tuple(value)
    return [f"- 95% confidence interval of {name.replace('_', '-')}: [{float(low):.4f}, {float(high):.4f}]"
            for name, (low, high) in intervals.items()]


def _failure_excerpt(markdown: str, max_lines: int) -> str:
    """The failure analysis report inside the card: no title, no images or links to project files (not
    shipped), sections as ####."""
    lines = []
    for line in markdown.splitlines():
        if re.match(r"^\s*!\[", line) or line.startswith("# "):
            continue
        heading = re.match(r"^#{2,6}\s+(.*)", line)
        line = re.sub(r"\[([^\]]+)\]\((?!https?://)[^)]*\)", r"\1", line)  # links to project files: text only
        lines.append(f"#### {heading.group(1)}" if heading else line)
    kept = "\n".join(lines).strip().splitlines()
    if len(kept) > max_lines:
        kept = kept[:max_lines] + ["", "*(trimmed: the full report is `reports/failure_analysis.md` in the project)*"]
    return "\n".join(kept)


def _reproducibility(inputs: CardInputs) -> str:
    rows = []
    for name, entry in inputs.lock.items():
        outs = entry.get("outs") or []
        hashes = ", ".join(f"`{o['path']}` {str(o.get('md5', ''))[:12]}" for o in outs if o.get("md5"))
        rows.append((name, hashes or "-"))
    raw = [f"`{d['path']}` {str(d.get('md5', ''))[:12]}" for d in (inputs.lock.get("prepare", {}).get("deps") or [])
           if d.get("md5") and not str(d["path"]).startswith("src/")]
    lines = [f"- git commit: `{inputs.git_commit}`",
             f"- raw data (md5 from `dvc.lock`): {', '.join(raw)}" if raw else "- raw data: not recorded in dvc.lock",
             f"- data fingerprint (processed splits): `{inputs.meta.get('data_fingerprint')}`",
             f"- MLflow run: `{inputs.run_id}`" if inputs.run_id else "- MLflow run: not recorded"]
    if inputs.registry:
        lines.append(f"- MLflow registered model: `{inputs.registry['name']}` version "
                     f"{inputs.registry['version']} (`{inputs.registry['model_uri']}`)")
    lines += ["", "Output hashes from `dvc.lock` (md5, first 12 characters) - `dvc repro` at this commit "
              "rebuilds exactly these:", "", md_table(["stage", "outputs"], rows) if rows else "*(no dvc.lock)*"]
    return "\n".join(lines)


def provenance(inputs: CardInputs, settings: dict) -> str:
    """`fine-tuned from <base> on <data> (text column ..., label column ...)`, the base and data linked on the Hub."""
    base = inputs.meta.get("base_model")
    base_link = f"[`{base}`](https://huggingface.co/{base})" if hub_metadata.is_hub_id(base) else f"`{base}`"
    source = settings["dataset"]
    source_text = f"[`{source}`](https://huggingface.co/datasets/{source})" if hub_metadata.is_hub_id(source) else f"`{Path(source).name}`"
    return (f"fine-tuned from {base_link} on {source_text} "
            f"(text column `{settings['text_column']}`, label column `{settings['label_column']}`)")


def _summary(inputs: CardInputs, settings: dict) -> list[str]:
    metrics, rows = inputs.metrics, inputs.profile.get("rows", {})
    return [f"A text classifier for {len(inputs.meta['labels'])} labels, {provenance(inputs, settings)}. "
            f"On the held-out test split ({metrics.get('n', rows.get('test', '?'))} texts) it reaches "
            f"**accuracy {pct(metrics['accuracy'])}** and **macro-F1 {pct(metrics['macro_f1'])}**.", ""]


def _labels(inputs: CardInputs) -> list[str]:
    """The label table, and how the abstain threshold (if any) was chosen."""
    meta, labels = inputs.meta, inputs.meta["labels"]
    support = {label: inputs.per_class.get(label, {}).get("support", 0) for label in labels}
    out = ["## Labels", "",
           md_table(["id", "label", "test F1", "test support"],
                    [(i, label, float(inputs.per_class.get(label, {}).get("f1", float("nan"))), support[label])
                     for i, label in enumerate(labels)]), ""]
    threshold = meta.get("abstain_threshold")
    if threshold is not None:
        chosen = meta.get("abstain") or {}
        how = (f" It was chosen on the validation split for a precision of at least {chosen['target_precision']} "
               f"and kept {pct(chosen['coverage'])} of the validation texts (precision {pct(chosen['precision'])})."
               if {"target_precision", "coverage", "precision"} <= set(chosen) else "")
        out += [f"Below a top-class confidence of **{float(threshold):.3f}** (saved in `classifier.json`) the "
                f"model's answer should be read as `UNKNOWN` and routed to a person.{how}", ""]
    return out


def _use(settings: dict, snippet: str, intended_note: list[str]) -> list[str]:
    return ["## Intended use", "", settings["intended_use"].strip(), "", *intended_note,
            "## Out-of-scope use", "", *[f"- {item}" for item in settings["out_of_scope"]], "",
            "## How to use", "", snippet, "",
            "In the project that trained it: `make predict TICKET=\"my parcel never arrived\"`, or "
            "`hfclf predict predict.input=tickets.csv predict.output=predictions.csv` for a file.", ""]


def _training(inputs: CardInputs, units: str, best_line: str) -> list[str]:
    """Training details: data (`units`: classes | labels), device, time, the best epoch, sizes, hyperparameters."""
    training, profile, labels = inputs.training, inputs.profile, inputs.meta["labels"]
    rows = profile.get("rows", {})
    return ["## Training details", "",
            f"- data: {rows.get('train', '?')} train / {rows.get('validation', '?')} validation / "
            f"{rows.get('test', '?')} test texts, {profile.get('num_classes', len(labels))} {units}",
            f"- device: `{training.get('device', '?')}` · precision: `{training.get('precision', '?')}` · "
            f"threads: {training.get('threads', '?')}",
            f"- training time: {float(training.get('train_seconds', 0)):.0f} s · {training.get('steps', '?')} steps · "
            f"epochs run: {training.get('epochs_run', '?')} · stopped: {training.get('stop_reason', '?')}",
            best_line,
            f"- parameters: {int(training.get('parameters', 0)):,} ({int(training.get('trainable_parameters', 0)):,} trainable)",
            "", md_table(["hyperparameter", "value"], _hyperparameters(inputs)), ""]


def _best_epoch(training: dict) -> str:
    return (f"- best epoch {training.get('best_epoch', '?')} by validation macro-F1 "
            f"({float(training.get('best_val_macro_f1', 0)):.4f})")


def _evaluation(inputs: CardInputs) -> list[str]:
    metrics = inputs.metrics
    out = ["## Evaluation", "", "On the test split, never seen during training or model selection:", "",
           md_table(["metric", "value"], [(k.replace("_", "-"), float(metrics[k]))
                                          for k in ("accuracy", "macro_f1", "weighted_f1") if k in metrics]), ""]
    out += _confidence_intervals(metrics)
    if inputs.baselines:
        out += ["", "### Baselines (same split)", "", _baselines_table(inputs)]
    worst = sorted(inputs.per_class.items(), key=lambda kv: kv[1].get("f1", 0))
    return out + ["", "### Per class", "",
                  md_table(["label", "precision", "recall", "F1", "support"],
                           [(label, float(s["precision"]), float(s["recall"]), float(s["f1"]), int(s["support"]))
                            for label, s in worst]), "",
                  "### Confusion matrix", "", f"![confusion matrix, row-normalised]({bundle.CONFUSION_IMAGE})", ""]


def _errors(inputs: CardInputs) -> list[str]:
    """The most frequent confusions, and the limit every single-label classifier has."""
    predictions, labels = inputs.predictions, inputs.meta["labels"]
    wrong = predictions[predictions["actual"] != predictions["predicted"]]
    pairs = wrong.groupby(["actual", "predicted"]).size().sort_values(ascending=False).head(5)
    out = (["Most frequent confusions on the test split:", "",
            *[f"- {a} → {p}: {n}×" for (a, p), n in pairs.items()], ""] if len(pairs) else [])
    limit = (f"- It knows only these {len(labels)} labels: any other request is forced into one of them"
             + (" unless its confidence falls below the abstain threshold." if inputs.meta.get("abstain_threshold")
                is not None else " (no abstain threshold is set for this model)."))
    return out + [limit]


def _limitations(inputs: CardInputs, settings: dict, errors: list[str]) -> list[str]:
    """Failure analysis and limitations: `errors` (the task's own lines, its limit last), the configured
    limitations and an excerpt of reports/failure_analysis.md."""
    out = ["## Failure analysis and limitations", "", *errors[:-1],
           *[f"- {item}" for item in settings["limitations"]], errors[-1], ""]
    if inputs.failure_analysis and settings["failure_analysis_max_lines"] > 0:
        out += ["### From the failure analysis", "", _failure_excerpt(inputs.failure_analysis,
                                                                      settings["failure_analysis_max_lines"]), ""]
    return out


def body(inputs: CardInputs, settings: dict, repo_id: str) -> str:
    """The card's Markdown; a multi-label model's task-specific sections come from card_multilabel.py."""
    if label_sets.is_multi_label(inputs.meta):
        baselines = _baselines_table(inputs, *card_multilabel.BASELINE_COLUMNS) if inputs.baselines else None
        sections = card_multilabel.sections(inputs, settings, repo_id, provenance(inputs, settings), baselines)
    else:
        sections = {"summary": _summary(inputs, settings), "labels": _labels(inputs), "intended": [],
                    "snippet": bundle.usage_snippet(repo_id, inputs.meta.get("abstain_threshold")),
                    "units": "classes", "best_epoch": _best_epoch(inputs.training),
                    "evaluation": _evaluation(inputs), "errors": _errors(inputs)}
    out = [f"# {settings['model_name']}", "", settings["description"], "", *sections["summary"],
           *sections["labels"], *_use(settings, sections["snippet"], sections["intended"]),
           *_training(inputs, sections["units"], sections["best_epoch"]), *sections["evaluation"],
           *_limitations(inputs, settings, sections["errors"]), "## Reproducibility", "", _reproducibility(inputs), ""]
    return "\n".join(out)


def build(inputs: CardInputs, settings: dict, repo_id: str):
    from huggingface_hub import ModelCard

    data = hub_metadata.card_data(inputs, settings)
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body(inputs, settings, repo_id)}")


# --------------------------------------------------------------------------- the stage

def card_settings(cfg: DictConfig) -> dict:
    settings = OmegaConf.to_container(cfg.card, resolve=True)
    settings.update(dataset=cfg.data.source, text_column=cfg.data.text_column, label_column=cfg.data.label_column)
    return settings


def repo_id(cfg: DictConfig) -> str:
    """The repo the card's snippet names: hub_repo.repo_id (conf/hub_repo/default.yaml) when set, else a placeholder."""
    return cfg.hub_repo.repo_id or REPO_PLACEHOLDER.format(project=Path.cwd().name)


@stage("card")
def main(cfg: DictConfig) -> None:
    import mlflow

    model_dir, reports, out_dir = Path(cfg.paths.model_dir), Path(cfg.paths.reports), Path(cfg.card.out_dir)
    run_id, params = tracking.run_params(cfg, model_dir)   # the hyperparameters the model was trained with
    inputs = gather(model_dir, reports, Path("dvc.lock"), params, tracking.git_commit(), run_id)
    model_card = build(inputs, card_settings(cfg), repo_id(cfg))
    problems = hub_metadata.validate(model_card)
    if problems:
        raise UserError("the model card's metadata is invalid: " + "; ".join(problems) +
                        ". Fix the values in conf/card.yaml (licence, language) and re-run `make card`.")
    shipped = bundle.stage_folder(model_dir, out_dir, str(model_card),
                                  Path(cfg.paths.figures) / "confusion_matrix_normalized.png")
    with tracking.model_run(cfg, model_dir):
        mlflow.log_text(str(model_card), "model_card/README.md")
        mlflow.set_tag("model_card", "model_card/README.md")
    log.info("staged %s: %s", out_dir, ", ".join(f.name for f in shipped))
