

# ---- merged from card
"""The model card and the folder that ships: `dist/model/` is exactly what `make publish` uploads.

`gather` reads what the pipeline wrote (reports/, the model folder, dvc.lock); reports written by
optional stages (baselines, confidence intervals, failure analysis) are used when present.
`build` turns that into a `huggingface_hub.ModelCard` (metadata + Markdown), `validate` checks the
metadata the way the Hub reads it, and `stage` writes the folder atomically.
"""
from __future__ import annotations

import json
import math
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from hfclf.infra.errors import UserError
from hfclf.infra.files import staged_folder
from hfclf.infra.render import md_table

# Files of the fine-tuned model folder that ship (tokenizer files vary by model family).
MODEL_FILES = ("model.safetensors", "config.json", "classifier.json", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "vocab.txt", "vocab.json", "merges.txt", "spm.model",
               "sentencepiece.bpe.model", "added_tokens.json")
CONFUSION_IMAGE = "confusion_matrix.png"
LABELS_FILE = "labels.json"
CARD_FILE = "README.md"
REPO_PLACEHOLDER = "<your-hub-username>/{project}"   # {project}: the project folder's name
# The one line of the usage snippet that names the model; `retarget` and the snippet test rely on it.
MODEL_ID_LINE = re.compile(r'^model_id = "[^"\n]*"', re.M)
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
HUB_LICENSES = {"apache-2.0", "mit", "cc-by-4.0", "cc-by-sa-4.0", "cc-by-nc-4.0", "cdla-sharing-1.0",
                "cdla-permissive-2.0", "bsd-3-clause", "gpl-3.0", "openrail", "other", "unknown"}


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


def _json(path: Path, required: bool, stage: str) -> dict | None:
    if not path.exists():
        if required:
            raise UserError(f"'{path}' is missing: run `make {stage}` (or `dvc repro {stage}`) first.")
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


# --------------------------------------------------------------------------- metadata

def is_hub_id(name: str | None) -> bool:
    return bool(name) and bool(HUB_ID.match(str(name))) and not Path(str(name)).exists()


def widget_examples(predictions: pd.DataFrame, n: int, max_chars: int = 200) -> list[dict]:
    """Correctly classified test texts, one per class in turn, the most confident first."""
    right = predictions[predictions["actual"] == predictions["predicted"]]
    if "confidence" in right:
        right = right.sort_values("confidence", ascending=False)
    picked: list[dict] = []
    for _, row in right.groupby("actual", sort=True).head(1).iterrows():
        if len(picked) >= n:
            break
        picked.append({"text": str(row["text"])[:max_chars], "example_title": str(row["actual"])})
    return picked


def card_data(inputs: CardInputs, settings: dict):
    """The card's YAML metadata: license, base model, datasets, pipeline tag, widget, model-index."""
    from huggingface_hub import EvalResult, ModelCardData

    source = settings["dataset"]
    dataset_type = source if is_hub_id(source) else Path(source).suffix.lstrip(".") or "local"
    dataset_name = source if is_hub_id(source) else Path(source).name
    metric_rows = [("accuracy", "accuracy", "Accuracy", None), ("f1", "macro_f1", "Macro F1", "macro"),
                   ("f1", "weighted_f1", "Weighted F1", "weighted")]
    results = [EvalResult(task_type="text-classification", task_name="Text Classification",
                          dataset_type=dataset_type, dataset_name=dataset_name, dataset_split="test",
                          metric_type=kind, metric_value=round(float(inputs.metrics[key]), 4), metric_name=name,
                          metric_config=config)
               for kind, key, name, config in metric_rows if key in inputs.metrics]
    license_ = settings["license"]
    extra = {"license_name": settings.get("license_name") or "custom"} if license_ == "other" else {}
    return ModelCardData(
        model_name=settings["model_name"], license=license_, language=settings["language"],
        library_name="transformers", pipeline_tag="text-classification",
        base_model=inputs.meta.get("base_model") if is_hub_id(inputs.meta.get("base_model")) else None,
        datasets=[source] if is_hub_id(source) else None,
        tags=["text-classification", "generated-from-cookiecutter-hf-classifier"],
        metrics=["accuracy", "f1"], eval_results=results,
        widget=widget_examples(inputs.predictions, settings["widget_examples"]), **extra)


def validate(card) -> list[str]:
    """Problems the Hub would reject or silently ignore in the card's metadata; empty when valid."""
    from huggingface_hub import ModelCardData
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    problems = []
    match = re.match(r"^---\n(.*?)\n---\n", card.content, re.S)
    if not match:
        return ["the card has no YAML metadata block at its top"]
    try:
        data = yaml.safe_load(match.group(1))
        parsed = ModelCardData(**data, ignore_metadata_errors=False)
    except Exception as err:  # malformed YAML or model-index
        return [f"metadata does not parse: {err}"]
    if data.get("license") not in HUB_LICENSES:
        problems.append(f"license '{data.get('license')}' is not a Hub licence id")
    if data.get("license") == "other" and not data.get("license_name"):
        problems.append("license 'other' needs license_name")
    if data.get("pipeline_tag") != "text-classification":
        problems.append("pipeline_tag must be text-classification")
    for key in ("base_model", "datasets"):
        values = data.get(key) or []
        for value in [values] if isinstance(values, str) else values:
            try:
                validate_repo_id(value)
            except HFValidationError as err:
                problems.append(f"{key} '{value}' is not a Hub repo id ({err})")
    widget = data.get("widget") or []
    if not all(isinstance(w, dict) and isinstance(w.get("text"), str) and w["text"] for w in widget):
        problems.append("every widget example needs a non-empty text")
    if not parsed.eval_results:
        problems.append("model-index has no results")
    for result in parsed.eval_results or []:
        value = result.metric_value
        if not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 <= value <= 1:
            problems.append(f"metric {result.metric_name} has value {value!r}, expected a number in [0, 1]")
    return problems


# --------------------------------------------------------------------------- body

def _pct(value) -> str:
    return f"{100 * float(value):.1f}%"


def usage_snippet(repo_id: str, threshold) -> str:
    """A runnable example for the published folder: transformers pipeline + the saved abstain threshold."""
    return "\n".join([
        "```python",
        "import json",
        "",
        "from transformers import pipeline",
        "from transformers.utils import cached_file",
        "",
        f'model_id = "{repo_id}"',
        'classify = pipeline("text-classification", model=model_id, top_k=3)',
        "# The abstain threshold chosen for this model (null = always answer); below it, say UNKNOWN.",
        'with open(cached_file(model_id, "classifier.json"), encoding="utf-8") as f:',
        '    threshold = json.load(f)["abstain_threshold"]',
        "",
        'tickets = ["I want my money back for the broken item", "how do I change my shipping address?"]',
        "for ticket, ranked in zip(tickets, classify(tickets, truncation=True)):",
        '    best = ranked[0]',
        '    label = best["label"] if threshold is None or best["score"] >= threshold else "UNKNOWN"',
        '    print(f"{label:<20} {best[\'score\']:.3f}  {ticket}")',
        "```",
    ])


def extract_snippet(card_text: str) -> str:
    """The Python code of the card's usage snippet (the first ```python block)."""
    match = re.search(r"```python\n(.*?)```", card_text, re.S)
    if not match:
        raise ValueError("the card has no ```python snippet")
    return match.group(1)


def _hyperparameters(inputs: CardInputs) -> list[tuple[str, str]]:
    wanted = ["model.name", "model.max_length", "model.freeze_embeddings", "train.epochs", "train.batch_size",
              "train.learning_rate", "train.weight_decay", "train.warmup_ratio", "train.early_stopping_patience",
              "compute.seed", "compute.max_minutes"]
    rows = [(key, str(inputs.params[key])) for key in wanted if key in inputs.params]
    rows += sorted((k, str(v)) for k, v in inputs.params.items()
                   if k.startswith("train.augment") and k not in wanted)
    if not rows:  # no MLflow params: what the model folder itself records
        rows = [("model.max_length", str(inputs.meta.get("max_length")))]
    return rows


def _baselines_table(inputs: CardInputs) -> str:
    keys = ["accuracy", "macro_f1"]
    rows = [("**this model**", *(float(inputs.metrics.get(k, float("nan"))) for k in keys))]
    for name, scores in inputs.baselines.items():
        rows.append((name, *(float(scores[k]) if isinstance(scores.get(k), (int, float)) else "-" for k in keys)))
    table = md_table(["model", "accuracy", "macro-F1"], rows)
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
    for stage, entry in inputs.lock.items():
        outs = entry.get("outs") or []
        hashes = ", ".join(f"`{o['path']}` {str(o.get('md5', ''))[:12]}" for o in outs if o.get("md5"))
        rows.append((stage, hashes or "-"))
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


def body(inputs: CardInputs, settings: dict, repo_id: str) -> str:
    meta, metrics, training, profile = inputs.meta, inputs.metrics, inputs.training, inputs.profile
    labels = meta["labels"]
    base = meta.get("base_model")
    base_link = f"[`{base}`](https://huggingface.co/{base})" if is_hub_id(base) else f"`{base}`"
    source = settings["dataset"]
    source_text = f"[`{source}`](https://huggingface.co/datasets/{source})" if is_hub_id(source) else f"`{Path(source).name}`"
    threshold = meta.get("abstain_threshold")
    rows = profile.get("rows", {})
    support = {label: inputs.per_class.get(label, {}).get("support", 0) for label in labels}

    out = [f"# {settings['model_name']}", "", settings["description"], "",
           f"A text classifier for {len(labels)} labels, fine-tuned from {base_link} on {source_text} "
           f"(text column `{settings['text_column']}`, label column `{settings['label_column']}`). "
           f"On the held-out test split ({metrics.get('n', rows.get('test', '?'))} texts) it reaches "
           f"**accuracy {_pct(metrics['accuracy'])}** and **macro-F1 {_pct(metrics['macro_f1'])}**.", "",
           "## Labels", "",
           md_table(["id", "label", "test F1", "test support"],
                    [(i, label, float(inputs.per_class.get(label, {}).get("f1", float("nan"))), support[label])
                     for i, label in enumerate(labels)]), ""]
    if threshold is not None:
        chosen = meta.get("abstain") or {}
        how = (f" It was chosen on the validation split for a precision of at least {chosen['target_precision']} "
               f"and kept {_pct(chosen['coverage'])} of the validation texts (precision {_pct(chosen['precision'])})."
               if {"target_precision", "coverage", "precision"} <= set(chosen) else "")
        out += [f"Below a top-class confidence of **{float(threshold):.3f}** (saved in `classifier.json`) the "
                f"model's answer should be read as `UNKNOWN` and routed to a person.{how}", ""]

    out += ["## Intended use", "", settings["intended_use"].strip(), "",
            "## Out-of-scope use", "", *[f"- {item}" for item in settings["out_of_scope"]], "",
            "## How to use", "", usage_snippet(repo_id, threshold), "",
            "In the project that trained it: `hfclf predict \"my parcel never "
            "arrived\"`, or `--input tickets.csv --output predictions.csv` for a file.", ""]

    stop = training.get("stop_reason", "?")
    out += ["## Training details", "",
            f"- data: {rows.get('train', '?')} train / {rows.get('validation', '?')} validation / "
            f"{rows.get('test', '?')} test texts, {profile.get('num_classes', len(labels))} classes",
            f"- device: `{training.get('device', '?')}` · precision: `{training.get('precision', '?')}` · "
            f"threads: {training.get('threads', '?')}",
            f"- training time: {float(training.get('train_seconds', 0)):.0f} s · {training.get('steps', '?')} steps · "
            f"epochs run: {training.get('epochs_run', '?')} · stopped: {stop}",
            f"- best epoch {training.get('best_epoch', '?')} by validation macro-F1 "
            f"({float(training.get('best_val_macro_f1', 0)):.4f})",
            f"- parameters: {int(training.get('parameters', 0)):,} ({int(training.get('trainable_parameters', 0)):,} trainable)",
            "", md_table(["hyperparameter", "value"], _hyperparameters(inputs)), ""]

    out += ["## Evaluation", "", "On the test split, never seen during training or model selection:", "",
            md_table(["metric", "value"], [(k.replace("_", "-"), float(metrics[k]))
                                           for k in ("accuracy", "macro_f1", "weighted_f1") if k in metrics]), ""]
    out += _confidence_intervals(metrics)
    if inputs.baselines:
        out += ["", "### Baselines (same split)", "", _baselines_table(inputs)]
    worst = sorted(inputs.per_class.items(), key=lambda kv: kv[1].get("f1", 0))
    out += ["", "### Per class", "",
            md_table(["label", "precision", "recall", "F1", "support"],
                     [(label, float(s["precision"]), float(s["recall"]), float(s["f1"]), int(s["support"]))
                      for label, s in worst]), "",
            "### Confusion matrix", "", f"![confusion matrix, row-normalised]({CONFUSION_IMAGE})", ""]

    out += ["## Failure analysis and limitations", ""]
    wrong = inputs.predictions[inputs.predictions["actual"] != inputs.predictions["predicted"]]
    pairs = wrong.groupby(["actual", "predicted"]).size().sort_values(ascending=False).head(5)
    if len(pairs):
        out += ["Most frequent confusions on the test split:", "",
                *[f"- {a} → {p}: {n}×" for (a, p), n in pairs.items()], ""]
    out += [*[f"- {item}" for item in settings["limitations"]],
            f"- It knows only these {len(labels)} labels: any other request is forced into one of them"
            + (" unless its confidence falls below the abstain threshold." if threshold is not None else
               " (no abstain threshold is set for this model)."), ""]
    if inputs.failure_analysis and settings["failure_analysis_max_lines"] > 0:
        out += ["### From the failure analysis", "", _failure_excerpt(inputs.failure_analysis,
                                                                      settings["failure_analysis_max_lines"]), ""]
    out += ["## Reproducibility", "", _reproducibility(inputs), ""]
    return "\n".join(out)


def build(inputs: CardInputs, settings: dict, repo_id: str):
    from huggingface_hub import ModelCard

    data = card_data(inputs, settings)
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body(inputs, settings, repo_id)}")


# --------------------------------------------------------------------------- the shipped folder

def retarget(card_text: str, repo_id: str) -> str:
    """The card with its usage snippet pointing at `repo_id`."""
    return MODEL_ID_LINE.sub(f'model_id = "{repo_id}"', card_text, count=1)


def named_repo(card_text: str) -> str | None:
    match = MODEL_ID_LINE.search(card_text)
    return match.group(0).split('"')[1] if match else None


def stage_folder(model_dir: Path, out_dir: Path, card_text: str, confusion_png: Path) -> list[Path]:
    """Write out_dir whole (weights, config, tokenizer, label mapping, classifier.json, card, image).

    Built in a temporary sibling folder and swapped in, so a failure never leaves half a folder.
    """
    meta = json.loads((model_dir / "classifier.json").read_text(encoding="utf-8"))
    with staged_folder(out_dir) as tmp:
        for name in MODEL_FILES:
            if (model_dir / name).exists():
                shutil.copy2(model_dir / name, tmp / name)
        tokenizer_config = tmp / "tokenizer_config.json"
        if tokenizer_config.exists():  # truncate where training truncated, also in `pipeline(...)`
            config = json.loads(tokenizer_config.read_text(encoding="utf-8"))
            config["model_max_length"] = meta["max_length"]
            tokenizer_config.write_text(json.dumps(config, indent=2), encoding="utf-8")
        labels = meta["labels"]
        (tmp / LABELS_FILE).write_text(json.dumps({
            "labels": labels, "id2label": {str(i): label for i, label in enumerate(labels)},
            "label2id": {label: i for i, label in enumerate(labels)},
            "abstain_threshold": meta.get("abstain_threshold")}, indent=2), encoding="utf-8")
        if confusion_png.exists():
            shutil.copy2(confusion_png, tmp / CONFUSION_IMAGE)
        (tmp / CARD_FILE).write_text(card_text, encoding="utf-8")
    return sorted(out_dir.iterdir())


# ---- merged from stages.card
"""card: write the model card and stage dist/model/, the folder `make publish` uploads.

Reads the model folder, the reports of prepare/train/evaluate/register (and of review/analyze
when they exist) and dvc.lock; validates the card's metadata; logs the card into the model's
MLflow run. Output: dist/model/ (README.md, weights, config, tokenizer, labels.json,
classifier.json, confusion_matrix.png).
"""
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from hfclf.infra import tracking
from hfclf.infra.cli import stage
from hfclf.infra.errors import UserError

log = logging.getLogger(__name__)


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
    tracking.configure(cfg)
    run_id = tracking.load_run_id(model_dir)
    try:
        params = mlflow.MlflowClient().get_run(run_id).data.params   # the hyperparameters the model was trained with
    except Exception as err:
        raise UserError(f"MLflow run {run_id} of '{model_dir}' is not in the store at {tracking.tracking_uri(cfg)} "
                        f"({str(err).splitlines()[0]}). Re-run `make train` with this store.") from None
    inputs = gather(model_dir, reports, Path("dvc.lock"), params, tracking.git_commit(), run_id)
    model_card = build(inputs, card_settings(cfg), repo_id(cfg))
    problems = validate(model_card)
    if problems:
        raise UserError("the model card's metadata is invalid: " + "; ".join(problems) +
                        ". Fix the values in conf/card.yaml (licence, language) and re-run `make card`.")
    files = stage_folder(model_dir, out_dir, str(model_card), Path(cfg.paths.figures) / "confusion_matrix_normalized.png")
    with tracking.model_run(cfg, model_dir):
        mlflow.log_text(str(model_card), "model_card/README.md")
        mlflow.set_tag("model_card", "model_card/README.md")
    log.info("staged %s: %s", out_dir, ", ".join(f.name for f in files))
