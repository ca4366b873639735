"""Shipping a multi-label model: the card (multi-label metrics, per-label thresholds, a model-index the
Hub reads), its usage snippet run against the staged folder, dist/model/, the MLflow pyfunc model
returning label sets, and publish (dry run, and an upload to the local stand-in for the Hub).

The model is the tiny BERT with a fresh multi-label head (no training: shipping does not care how
good it is); the reports are synthetic but consistent - the metrics are computed from the
predictions table they sit beside. `register` and `card` run as the real stages, in a copy of the
baked project.
"""
from __future__ import annotations

import contextlib

import base64
import json
import re

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import copy_project, run_stage
from hub_upload_server import FakeHubUploads
from test_shipping import EXPECTED_FILES, TOKEN, run_command
from hfclf.data import multilabel as label_sets
from hfclf.ship import bundle, hub_metadata
from hfclf.train import modeling

LABELS = ["account", "billing", "delivery", "refund"]
# The texts of the card's snippet (bundle.multi_label_snippet): thresholds are set between their scores.
SNIPPET_TICKETS = ["I was charged twice and my parcel never arrived", "how do I change my shipping address?"]
TEST_TEXTS = ["my parcel is late", "refund the double charge", "reset my password", "where is my order",
              "charged twice, want my money back", "cannot log in after the update", "invoice is wrong",
              "the box arrived broken, refund please"]
TEST_TRUTH = [["delivery"], ["billing", "refund"], ["account"], ["delivery"], ["billing", "refund"], ["account"],
              ["billing"], ["delivery", "refund"]]
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")
CI_HALF_WIDTH = 0.05
HEAD_STD = 4.0      # the fresh head's weights: the untrained tiny BERT's texts are near-identical otherwise
MIN_GAP = 2e-5      # scores of the two snippet texts, per label: far above the pipeline-vs-Predictor float noise


# --------------------------------------------------------------------------- the model and its reports

def separating_thresholds(predictor: modeling.Predictor) -> list[float]:
    """Per-label thresholds halfway between the two snippet texts' scores: each label goes to exactly one
    of them, so the snippet's two label sets differ and together hold every label."""
    first, second = predictor.predict_proba(SNIPPET_TICKETS)
    assert np.abs(first - second).min() > MIN_GAP, "scores too close for a threshold between them"
    return [round(float(t), 6) for t in (first + second) / 2]


def save_model(tiny_model_dir, folder) -> dict:
    """The tiny BERT with a multi-label head, saved as train saves it; thresholds set between the
    snippet texts' scores. Returns classifier.json's contents."""
    import torch

    tokenizer, model, _ = modeling.load_for_training(str(tiny_model_dir), LABELS, 0, None, task="multi_label")
    torch.manual_seed(0)   # a wider fresh head: texts' scores differ by more than float noise (~1e-7)
    torch.nn.init.normal_(model.classifier.weight, std=HEAD_STD)
    meta = {"labels": LABELS, "max_length": 128, "abstain_threshold": None, "task": "multi_label",
            "thresholds": [0.5] * len(LABELS), "base_model": str(tiny_model_dir), "data_fingerprint": "fp-ml-1",
            "threshold_tuning": {"micro_f1_default": 0.5512, "micro_f1_tuned": 0.6034, "labels_tuned": 4},
            "best_val_micro_f1": 0.6034}
    modeling.save(model, tokenizer, folder, meta)
    meta["thresholds"] = separating_thresholds(modeling.Predictor.from_dir(folder))
    (folder / modeling.CLASSIFIER_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return meta


def synthetic_intervals(scores: dict) -> dict:
    return {f"{key}_ci_{side}": float(np.clip(scores[key] + sign * CI_HALF_WIDTH, 0, 1))
            for key in ("micro_f1", "macro_f1", "samples_f1", "subset_accuracy", "hamming_loss")
            for side, sign in (("low", -1), ("high", 1))}


def write_reports(reports, model_dir, meta: dict) -> dict:
    """metrics.json, per_class.json, predictions.csv (the model's own predictions on TEST_TEXTS),
    training.json, data_profile.json and the confusion figure, in evaluate's multi-label format."""
    from hfclf.evaluate import multilabel

    texts = [*SNIPPET_TICKETS, *TEST_TEXTS]
    predicted = [p.labels for p in modeling.Predictor.from_dir(model_dir).predict(texts)]
    assert all(predicted[:2]), "each snippet text should get some of the labels"
    truth_sets = [*predicted[:2], *TEST_TRUTH]     # the snippet texts right (widget examples), the others as given
    truth = label_sets.matrix([label_sets.encode(t) for t in truth_sets], LABELS).astype(np.int8)
    pred = label_sets.matrix([label_sets.encode(p) for p in predicted], LABELS).astype(np.int8)
    scores = multilabel.metrics(truth, pred, LABELS)
    confusion = multilabel.confusion_matrices(truth, pred, LABELS)
    metrics = {"task": "multi_label", **{k: v for k, v in scores.items() if k != "per_label"},
               **synthetic_intervals(scores), "baselines": {"majority": {"micro_f1": 0.3, "macro_f1": 0.12},
                                                           "tfidf_logreg": {"micro_f1": 0.41, "macro_f1": 0.35}},
               "best_baseline": "tfidf_logreg",
               "margin_over_best_baseline": {"micro_f1": (scores["micro_f1"] - 0.41) * 100,
                                             "macro_f1": (scores["macro_f1"] - 0.35) * 100}}
    per_class = {label: s | {"threshold": t} | confusion[label]
                 for (label, s), t in zip(scores["per_label"].items(), meta["thresholds"])}
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "figures").mkdir(exist_ok=True)
    (reports / "figures/confusion_matrix_normalized.png").write_bytes(PNG)
    predictions = pd.DataFrame({"text": texts, "actual": [label_sets.encode(t) for t in truth_sets],
                                "predicted": [label_sets.encode(p) for p in predicted]})
    predictions.to_csv(reports / "predictions.csv", index=False)
    training = {"task": "multi_label", "score_name": "micro_f1", "best_val_score": 0.6034, "best_val_micro_f1": 0.6034,
                "best_val_macro_f1": 0.5, "best_epoch": 2, "epochs_run": 3, "stop_reason": "max_epochs",
                "device": "cpu", "precision": "fp32", "threads": 2, "train_seconds": 7.0, "steps": 24,
                "parameters": 1000, "trainable_parameters": 1000}
    profile = {"rows": {"train": 40, "validation": 10, "test": len(texts)}, "num_classes": len(LABELS)}
    for name, content in (("metrics", metrics), ("per_class", per_class), ("training", training),
                          ("data_profile", profile)):
        (reports / f"{name}.json").write_text(json.dumps(content, indent=2), encoding="utf-8")
    return metrics


def open_training_run(root, model_dir) -> str:
    """The model's MLflow run, as train leaves it (in the project's experiment, id in mlflow_run.json)."""
    import mlflow
    from omegaconf import OmegaConf

    from hfclf.infra import tracking

    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    with contextlib.chdir(root):   # a new experiment's artifacts go to ./mlruns: the project's, as `hfclf train` does
        mlflow.set_experiment(OmegaConf.load(root / "conf/tracking/default.yaml").experiment)
        with mlflow.start_run() as run:
            mlflow.log_params({"train.learning_rate": 0.01, "model.max_length": 128})
    tracking.save_run_id(model_dir, run.info.run_id, uri)
    return run.info.run_id


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_model_dir, baked_project):
    """A project whose model is multi-label, with its reports, after the real `register` and `card` stages."""
    root = copy_project(baked_project, tmp_path_factory.mktemp("ml-shipped"))
    model_dir = root / "models/model"
    meta = save_model(tiny_model_dir, model_dir)
    metrics = write_reports(root / "reports", model_dir, meta)
    open_training_run(root, model_dir)
    run_stage(root, "register")
    run_stage(root, "card", "data.source=tickets.csv")
    return {"root": root, "meta": meta, "metrics": metrics, "dist": root / "dist/model"}


def front_matter(text: str) -> dict:
    match = re.match(r"^---\n(.*?)\n---\n", text, re.S)
    assert match, "the card has no YAML front matter"
    return yaml.safe_load(match.group(1))


# --------------------------------------------------------------------------- card

def test_model_index_carries_the_multi_label_test_metrics(project):
    from huggingface_hub import ModelCard

    text = (project["dist"] / "README.md").read_text(encoding="utf-8")
    assert hub_metadata.validate(ModelCard(text)) == []
    data, metrics = front_matter(text), project["metrics"]
    assert data["pipeline_tag"] == "text-classification" and data["library_name"] == "transformers"
    assert "multi-label-classification" in data["tags"] and "text-classification" in data["tags"]
    [index] = data["model-index"]
    [result] = index["results"]
    assert result["task"] == {"type": "text-classification", "name": "Multi-label Text Classification"}
    assert result["dataset"]["split"] == "test" and result["dataset"]["name"] == "tickets.csv"
    found = {(m["type"], m["name"]): m for m in result["metrics"]}
    expected = {("f1", "micro-F1"): ("micro_f1", {"average": "micro"}),
                ("f1", "macro-F1"): ("macro_f1", {"average": "macro"}),
                ("f1", "samples-F1"): ("samples_f1", {"average": "samples"}),
                ("exact_match", "subset accuracy"): ("subset_accuracy", None),
                ("hamming_loss", "Hamming loss"): ("hamming_loss", None)}
    assert set(found) == set(expected)
    for key, (name, args) in expected.items():
        assert found[key]["value"] == round(metrics[name], 4), key
        assert found[key].get("args") == args, key
    predictions = pd.read_csv(project["root"] / "reports/predictions.csv")
    right = predictions[predictions["actual"] == predictions["predicted"]]
    actual_of = dict(zip(right["text"], right["actual"]))     # widget examples: right answers, titled readably
    assert SNIPPET_TICKETS[0] in {w["text"] for w in data["widget"]}
    assert all(w["example_title"] == label_sets.readable(actual_of[w["text"]]) for w in data["widget"])


def test_card_states_multi_label_metrics_thresholds_and_limits(project):
    text = (project["dist"] / "README.md").read_text(encoding="utf-8")
    metrics, meta = project["metrics"], project["meta"]
    for heading in ("## Labels", "## Intended use", "## How to use", "## Training details", "## Evaluation",
                    "### Baselines (same split)", "### Per label", "### Per-label confusion matrices",
                    "## Failure analysis and limitations", "## Reproducibility"):
        assert heading in text, heading
    assert f"multi-label text classifier over {len(LABELS)} labels" in text.lower()
    for key, name in (("micro_f1", "micro-F1"), ("macro_f1", "macro-F1"), ("samples_f1", "samples-F1"),
                      ("subset_accuracy", "subset accuracy"), ("hamming_loss", "Hamming loss")):
        row = (f"| {name} | {metrics[key]:.4f} | [{metrics[key + '_ci_low']:.4f}, "
               f"{metrics[key + '_ci_high']:.4f}] |")
        assert row in text, row
    for i, (label, threshold) in enumerate(zip(LABELS, meta["thresholds"])):   # label table: id, threshold, F1
        assert f"| {i} | {label} | {threshold:.4f} |" in text, label
    assert "lift micro-F1 from 0.5512 (every threshold at 0.5) to 0.6034" in text
    assert "best epoch 2 by validation micro-F1 (0.6034)" in text and "4 labels" in text
    assert f"| **this model** | {metrics['micro_f1']:.4f} | {metrics['macro_f1']:.4f} |" in text
    assert "| tfidf_logreg | 0.4100 | 0.3500 |" in text
    assert "This is a **multi-label** model" in text and "no abstain threshold" in text
    assert "accuracy **" not in text and "**accuracy" not in text and "UNKNOWN" not in text
    registry = json.loads((project["root"] / "reports/registry.json").read_text())
    assert f"version {registry['version']}" in text


def test_card_lists_the_labels_most_often_missed_and_added(project):
    text = (project["dist"] / "README.md").read_text(encoding="utf-8")
    predictions = pd.read_csv(project["root"] / "reports/predictions.csv")
    missed, added = {}, {}
    for actual, predicted in zip(predictions["actual"], predictions["predicted"]):
        for label in set(json.loads(actual)) - set(json.loads(predicted)):
            missed[label] = missed.get(label, 0) + 1
        for label in set(json.loads(predicted)) - set(json.loads(actual)):
            added[label] = added.get(label, 0) + 1
    assert missed or added, "the synthetic predictions should hold errors"
    for heading, counts in (("most often missed", missed), ("most often wrongly added", added)):
        section = text.split(heading, 1)[1].split("\n\n", 2)[1] if counts else ""
        assert all(f"- {label}: {n}×" in section for label, n in counts.items()), (heading, section)


# --------------------------------------------------------------------------- snippet and bundle

def test_snippet_prints_the_label_sets_the_predictor_gives(project, capsys):
    snippet = bundle.extract_snippet((project["dist"] / "README.md").read_text(encoding="utf-8"))
    assert all(json.dumps(ticket) in snippet for ticket in SNIPPET_TICKETS)   # the texts the thresholds split
    runnable = bundle.retarget(snippet, str(project["dist"]))
    assert runnable != snippet
    exec(compile(runnable, "model-card-snippet", "exec"), {})
    printed = {}
    for line in capsys.readouterr().out.strip().splitlines():
        labels, end = json.JSONDecoder().raw_decode(line)
        printed[line[end:].strip()] = labels
    assert list(printed) == SNIPPET_TICKETS
    expected = modeling.Predictor.from_dir(project["dist"]).predict(SNIPPET_TICKETS)
    assert [sorted(printed[t]) for t in SNIPPET_TICKETS] == [sorted(p.labels) for p in expected]
    first, second = (set(printed[t]) for t in SNIPPET_TICKETS)   # the thresholds split the labels between them
    assert first.isdisjoint(second) and first | second == set(LABELS)


def test_dist_folder_ships_the_per_label_thresholds(project):
    folder, meta = project["dist"], project["meta"]
    assert {p.name for p in folder.iterdir()} == EXPECTED_FILES
    shipped = json.loads((folder / "classifier.json").read_text())
    assert shipped["task"] == "multi_label" and shipped["thresholds"] == meta["thresholds"]
    labels = json.loads((folder / "labels.json").read_text())
    assert labels["labels"] == LABELS and labels["task"] == "multi_label"
    assert labels["thresholds"] == meta["thresholds"] and labels["label2id"]["refund"] == 3
    config = json.loads((folder / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    assert config["id2label"] == {str(i): label for i, label in enumerate(LABELS)}


# --------------------------------------------------------------------------- MLflow registry

def test_registered_model_returns_label_sets_and_records_the_thresholds(project):
    import mlflow

    root = project["root"]
    registered = json.loads((root / "reports/registry.json").read_text())
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model(registered["model_uri"])
    assert model.metadata.get_output_schema().input_names()[0] == "labels"
    out = model.predict(SNIPPET_TICKETS, params={"top_k": 2})
    assert list(out.columns) == ["labels", "label", "confidence", "top_k"]
    expected = modeling.Predictor.from_dir(root / "models/model").predict(SNIPPET_TICKETS)
    assert [json.loads(cell) for cell in out["labels"]] == [p.labels for p in expected]
    assert list(out["label"]) == ["; ".join(p.labels) for p in expected]
    version = mlflow.MlflowClient().get_model_version(registered["name"], registered["version"])
    assert version.tags["task"] == "multi_label" and "abstain_threshold" not in version.tags
    assert json.loads(version.tags["thresholds"]) == {
        label: round(t, 4) for label, t in zip(LABELS, project["meta"]["thresholds"])}
    assert float(version.tags["test/micro_f1"]) == pytest.approx(project["metrics"]["micro_f1"], abs=1e-4)
    assert version.description.startswith(f"multi-label text classifier over {len(LABELS)} labels")


# --------------------------------------------------------------------------- publish

def test_publish_dry_run_lists_every_file_of_the_bundle(project):
    out = run_command(project["root"], "publish").stdout
    assert "DRY RUN - nothing will be uploaded." in out
    for path in project["dist"].iterdir():
        assert f"{path.name}" in out and f"{path.stat().st_size:,} B" in out, path.name


def test_publish_uploads_the_multi_label_model_and_its_space(project):
    root = project["root"]
    with FakeHubUploads(TOKEN) as hub:
        env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": TOKEN, "HUB_REPO": "acme/ticket-tagger",
               "HUB_SPACE": "acme/ticket-tagger-demo", "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_XET": "1"}
        result = run_command(root, "publish", **env)
        assert "model acme/ticket-tagger: uploaded" in result.stdout
        repo = hub.repo("acme/ticket-tagger")
        assert set(repo.files) == EXPECTED_FILES and len(repo.commits) == 1
        assert json.loads(repo.files["classifier.json"])["thresholds"] == project["meta"]["thresholds"]
        assert 'model_id = "acme/ticket-tagger"' in repo.files["README.md"].decode()
        space = hub.repo("acme/ticket-tagger-demo", "space")
        readme = space.files["README.md"].decode()
        assert "every label whose score reaches that label's own threshold" in readme and "UNKNOWN" not in readme
        assert b'MODEL_REPO = "acme/ticket-tagger"' in space.files["app.py"]
    assert all(TOKEN.encode() not in p.read_bytes() for p in root.rglob("*") if p.is_file())
