"""Your own model for fine-tuning, for what the standard classification head cannot do (unused by default).

Switch it on in conf/model/default.yaml:

    builder: {{ cookiecutter.package_name }}.model.build

`smoke` and `train` are the stages that run this file, so dvc.yaml lists it as their dependency:
editing it re-runs them (and what depends on the new model), nothing else. The trained model is
saved with `save_pretrained` and reloaded by `evaluate`, `predict` and the demo with
`AutoModelForSequenceClassification`, so build one that class can reload: a standard
architecture whose configuration or initialisation you change.
"""
from __future__ import annotations


def build(folder: str, labels: list[str]):
    """A sequence-classification model with one output per label, from the base model in `folder`
    (model.name, resolved to a local folder). The random seed is already set."""
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(
        folder, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)})
    # e.g. a different dropout on the new head (BERT-like models): add classifier_dropout=0.2 above
