"""The model card's YAML metadata - what the Hugging Face Hub reads from it: licence, base model,
datasets, pipeline tag, widget examples and the model-index of test scores - and `validate`,
which checks that metadata the way the Hub reads it (card.py puts it on top of the card).

A multi-label model's metadata has its own model-index (micro/macro/samples F1 with their
`average` as args, subset accuracy as exact_match, Hamming loss) and the tag
`multi-label-classification`; the pipeline tag stays text-classification, which the Hub's widget
runs with one sigmoid score per label (the model's problem_type).
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import yaml

from hfclf.data import multilabel as label_sets

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
HUB_LICENSES = {"apache-2.0", "mit", "cc-by-4.0", "cc-by-sa-4.0", "cc-by-nc-4.0", "cdla-sharing-1.0",
                "cdla-permissive-2.0", "bsd-3-clause", "gpl-3.0", "openrail", "other", "unknown"}


def is_hub_id(name: str | None) -> bool:
    return bool(name) and bool(HUB_ID.match(str(name))) and not Path(str(name)).exists()


def widget_examples(predictions: pd.DataFrame, n: int, max_chars: int = 200, title=str) -> list[dict]:
    """Correctly classified test texts, one per class (multi-label: per label set) in turn, the most
    confident first; `title` names an example after its actual label (set)."""
    right = predictions[predictions["actual"] == predictions["predicted"]]
    if "confidence" in right:
        right = right.sort_values("confidence", ascending=False)
    picked: list[dict] = []
    for _, row in right.groupby("actual", sort=True).head(1).iterrows():
        if len(picked) >= n:
            break
        picked.append({"text": str(row["text"])[:max_chars], "example_title": title(row["actual"])})
    return picked


# The model-index rows: (metric type, metrics.json key, name, config, args) of the task's test scores.
SINGLE_LABEL_METRICS = (("accuracy", "accuracy", "Accuracy", None, None), ("f1", "macro_f1", "Macro F1", "macro", None),
                        ("f1", "weighted_f1", "Weighted F1", "weighted", None))
MULTI_LABEL_METRICS = (("f1", "micro_f1", "micro-F1", "micro", {"average": "micro"}),
                       ("f1", "macro_f1", "macro-F1", "macro", {"average": "macro"}),
                       ("f1", "samples_f1", "samples-F1", "samples", {"average": "samples"}),
                       ("exact_match", "subset_accuracy", "subset accuracy", None, None),
                       ("hamming_loss", "hamming_loss", "Hamming loss", None, None))
TAGS = ["text-classification", "generated-from-cookiecutter-hf-classifier"]
MULTI_LABEL_TAG = "multi-label-classification"


def _task(meta: dict) -> dict:
    """What the metadata says differently for a multi-label model: metrics, tags, widget titles."""
    if not label_sets.is_multi_label(meta):
        return {"rows": SINGLE_LABEL_METRICS, "task_name": "Text Classification", "tags": TAGS,
                "metrics": ["accuracy", "f1"], "title": str}
    return {"rows": MULTI_LABEL_METRICS, "task_name": "Multi-label Text Classification",
            "tags": [TAGS[0], MULTI_LABEL_TAG, *TAGS[1:]], "metrics": ["f1", "exact_match", "hamming_loss"],
            "title": label_sets.readable}


def card_data(inputs, settings: dict):
    """The card's YAML metadata (from card.CardInputs and the card settings): license, base model, datasets, pipeline tag, widget, model-index."""
    from huggingface_hub import EvalResult, ModelCardData

    source = settings["dataset"]
    dataset_type = source if is_hub_id(source) else Path(source).suffix.lstrip(".") or "local"
    dataset_name = source if is_hub_id(source) else Path(source).name
    task = _task(inputs.meta)
    results = [EvalResult(task_type="text-classification", task_name=task["task_name"],
                          dataset_type=dataset_type, dataset_name=dataset_name, dataset_split="test",
                          metric_type=kind, metric_value=round(float(inputs.metrics[key]), 4), metric_name=name,
                          metric_config=config, metric_args=args)
               for kind, key, name, config, args in task["rows"] if key in inputs.metrics]
    license_ = settings["license"]
    extra = {"license_name": settings.get("license_name") or "custom"} if license_ == "other" else {}
    return ModelCardData(
        model_name=settings["model_name"], license=license_, language=settings["language"],
        library_name="transformers", pipeline_tag="text-classification",
        base_model=inputs.meta.get("base_model") if is_hub_id(inputs.meta.get("base_model")) else None,
        datasets=[source] if is_hub_id(source) else None,
        tags=task["tags"], metrics=task["metrics"], eval_results=results,
        widget=widget_examples(inputs.predictions, settings["widget_examples"], title=task["title"]), **extra)


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
