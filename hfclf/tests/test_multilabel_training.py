"""Multi-label training and prediction on the tiny in-process model: the objective (0/1 targets,
BCE, micro-F1), the saved model's problem_type (so transformers' own pipeline scores each label with
a sigmoid), per-label thresholds and label sets from Predictor, predict and the pyfunc wrapper."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import TOPICS
from hfclf.data import multilabel
from hfclf.infra import compute
from hfclf.train import loop, modeling, objective

LABELS = sorted(TOPICS)
GOAL = objective.for_task(multilabel.MULTI)


def multi_label_tickets(rows: int = 150, seed: int = 0) -> pd.DataFrame:
    """Tickets about one or two topics at once ("cancel my order and refund for the broken item")."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(rows):
        picked = sorted(rng.choice(LABELS, size=1 + int(rng.random() < 0.4), replace=False))
        text = " and ".join(TOPICS[label][int(rng.integers(4))] for label in picked)
        records.append({"text": f"{text} #{i}", "label": multilabel.encode(picked)})
    return pd.DataFrame(records)


def fit(tiny_model_dir, frame, **overrides):
    tokenizer, model, _ = modeling.load_for_training(str(tiny_model_dir), LABELS, seed=0, task=multilabel.MULTI)
    y = GOAL.targets(frame["label"], LABELS)
    settings = loop.TrainSettings(**{"epochs": 6, "batch_size": 8, "learning_rate": 3e-3, "freeze_embeddings": False,
                                     "early_stopping_patience": 6, "log_every_steps": 2, "seed": 0, **overrides})
    logged = []
    result = loop.train(model, tokenizer, frame["text"].tolist(), y, frame["text"].tolist(), y, settings,
                        compute.select("cpu", "fp32", 1), on_metrics=lambda m, s: logged.append(m), objective=GOAL)
    return model, tokenizer, result, logged


@pytest.fixture(scope="module")
def trained(tiny_model_dir):
    frame = multi_label_tickets()
    return frame, *fit(tiny_model_dir, frame)


def test_targets_are_label_rows_and_the_loss_is_binary_cross_entropy():
    y = GOAL.targets(['["ORDER", "REFUND"]', '["ACCOUNT"]', "[]"], LABELS)
    np.testing.assert_array_equal(y, [[0, 1, 1], [1, 0, 0], [0, 0, 0]])
    logits = torch.tensor([[-2.0, 2.0, 2.0], [2.0, -2.0, -2.0], [-2.0, -2.0, -2.0]])
    expected = torch.nn.functional.binary_cross_entropy(torch.sigmoid(logits), torch.tensor(y))
    assert GOAL.loss(logits, GOAL.tensor(y)).item() == pytest.approx(expected.item(), rel=1e-5)
    scores = GOAL.validation_scores(logits.numpy(), y)
    assert scores["val_micro_f1"] == 1.0 and scores["val_accuracy"] == 1.0   # every set exactly right
    half = GOAL.validation_scores(np.array([[2.0, 2.0, -2.0]], dtype=np.float32), np.array([[1, 0, 1]]))
    assert half["val_micro_f1_at_half"] == pytest.approx(0.5) and half["val_accuracy"] == 0.0   # 1 TP, 1 FP, 1 FN
    # early in training every score is below 0.5: nothing is predicted at 0.5, yet the ranking is right
    early = GOAL.validation_scores(np.array([[-1.0, -3.0, -1.5], [-3.0, -1.2, -3.0]], dtype=np.float32),
                                   np.array([[1, 0, 1], [0, 1, 0]]))
    assert early["val_micro_f1_at_half"] == 0.0 and early["val_micro_f1"] == 1.0   # the stopping score
    # best single threshold: scores .9 (+) .8 (-) .7 (+) .1 (-): top 3 give 2 TP of 2 positives, F1 4/5
    probs = np.array([[0.9, 0.8], [0.7, 0.1]])
    assert objective.best_micro_f1(probs, np.array([[1, 0], [1, 0]])) == pytest.approx(4 / 5)


def test_the_head_starts_at_each_labels_prior_odds_for_multi_label_only(tiny_model_dir):
    y = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 0, 0]])   # priors 3/4, 1/4 and 0 (clipped)
    _, model, _ = modeling.load_for_training(str(tiny_model_dir), LABELS, seed=0, task=multilabel.MULTI)
    assert GOAL.init_head(model, y)
    expected = np.log(np.array([0.75, 0.25, 1e-4]) / np.array([0.25, 0.75, 1 - 1e-4]))
    np.testing.assert_allclose(model.classifier.bias.detach().numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(torch.sigmoid(model.classifier.bias).detach().numpy(), [0.75, 0.25, 1e-4], rtol=1e-4)
    single = objective.for_task(multilabel.SINGLE)
    _, plain, _ = modeling.load_for_training(str(tiny_model_dir), LABELS, seed=0)
    before = plain.classifier.bias.detach().clone()
    assert not single.init_head(plain, np.array([0, 1, 2]))
    assert torch.equal(plain.classifier.bias, before)
    # a head nested as in RoBERTa (classifier.dense -> classifier.out_proj): the last 3-output linear layer
    nested = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 3))
    assert objective.output_layer(nested, 3) is nested[2]
    assert objective.output_layer(torch.nn.Linear(4, 5), 3) is None


def test_the_model_learns_label_sets_and_stops_on_micro_f1(trained):
    frame, _, _, result, logged = trained
    losses = [m["train/loss"] for m in logged if "train/loss" in m]
    third = len(losses) // 3
    assert np.mean(losses[-third:]) < np.mean(losses[:third]) * 0.8
    assert result.score_name == "micro_f1"
    assert result.best_val_score == max(h["val_micro_f1"] for h in result.history) > 0.7


def test_a_saved_multi_label_model_predicts_label_sets_here_and_in_transformers_pipeline(trained, tmp_path):
    from transformers import pipeline

    frame, model, tokenizer, _, _ = trained
    modeling.save(model, tokenizer, tmp_path / "m", {"max_length": 128, "abstain_threshold": None,
                                                      "task": multilabel.MULTI, "thresholds": [0.5, 0.5, 0.99]})
    predictor = modeling.Predictor.from_dir(tmp_path / "m", compute.select("cpu", "fp32", 1))
    assert predictor.model.config.problem_type == "multi_label_classification"
    texts = frame["text"].head(12).tolist()
    probs = predictor.predict_proba(texts)
    assert probs.shape == (12, 3) and not np.allclose(probs.sum(1), 1.0)   # one sigmoid per label
    for text, row, prediction in zip(texts, probs, predictor.predict(texts, top_k=1)):
        expected = [LABELS[i] for i in np.argsort(-row) if row[i] >= [0.5, 0.5, 0.99][i]]
        assert prediction.labels == expected and prediction.label == "; ".join(expected)
        assert len(prediction.top_k) == max(1, len(expected))     # every chosen label is in the top-k
    # transformers' own pipeline reads problem_type from the saved config: sigmoid scores too
    classify = pipeline("text-classification", model=str(tmp_path / "m"), top_k=None, device="cpu")
    scores = {item["label"]: item["score"] for item in classify([texts[0]])[0]}
    np.testing.assert_allclose([scores[label] for label in LABELS], probs[0], atol=1e-4)
    empty = predictor.predict(["   "])[0]
    assert empty.labels == [] and empty.reason == modeling.EMPTY_TEXT


def test_predict_writes_label_sets_as_json_lists(trained, tmp_path, capsys):
    from hfclf.ship import predict

    frame, model, tokenizer, _, _ = trained
    modeling.save(model, tokenizer, tmp_path / "m", {"max_length": 128, "abstain_threshold": None,
                                                      "task": multilabel.MULTI, "thresholds": [0.5, 0.5, 0.5]})
    frame.head(8)[["text"]].to_csv(tmp_path / "in.csv", index=False)
    predict.run(predict.PredictSettings(model_dir=str(tmp_path / "m"), input=str(tmp_path / "in.csv"),
                                        output=str(tmp_path / "out.csv"), device="cpu"))
    out = pd.read_csv(tmp_path / "out.csv")
    sets = [json.loads(v) for v in out["predicted_labels"]]
    assert all(set(s) <= set(LABELS) for s in sets) and any(len(s) > 1 for s in sets)
    assert out["predicted_label"].fillna("").tolist() == ["; ".join(s) for s in sets]
    predict.run(predict.PredictSettings(model_dir=str(tmp_path / "m"), text=frame["text"][0], json=True,
                                        device="cpu"))
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(line["labels"]) <= set(LABELS) and line["label"] == "; ".join(line["labels"])
