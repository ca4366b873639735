"""Multi-label evaluation: per-label thresholds, metrics against scikit-learn and hand counts,
bootstrap intervals, one-vs-rest baselines, the report and the evaluate stage's multi-label branch
(on a stand-in predictor: no model is trained here)."""
from __future__ import annotations

import contextlib
import json
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from hfclf.analyze import failures
from hfclf.data import multilabel as label_sets
from hfclf.evaluate import multilabel, multilabel_baselines, multilabel_metrics, multilabel_report
from hfclf.evaluate.baselines import BaselineResult
from hfclf.evaluate.bootstrap import Resamples
from hfclf.infra import compute
from hfclf.infra.errors import UserError

# rows x 4 labels; label a needs a low threshold, b is right at 0.5, c has no positives, d needs a high one
PROBS = np.array([[0.30, 0.9, 0.6, 0.95], [0.35, 0.8, 0.1, 0.97], [0.40, 0.7, 0.1, 0.60],
                  [0.10, 0.1, 0.1, 0.70], [0.20, 0.2, 0.1, 0.80], [0.05, 0.3, 0.1, 0.90]])
TRUTH = np.array([[1, 1, 0, 1], [1, 1, 0, 1], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])

PHRASES = {
    "billing": ["i was charged twice on my card", "the invoice amount is wrong", "why is there a fee on my bill"],
    "shipping": ["the parcel has not arrived yet", "tracking number shows no update",
                 "delivery came to the wrong address"],
    "account": ["i cannot log in to my account", "please reset my password", "change the email on my profile"],
}
LABELS = ["account", "billing", "legal", "shipping"]          # `legal` never occurs: a label with no positives


def tickets(rows: int, seed: int) -> tuple[list[str], np.ndarray]:
    """Texts made of one phrase per topic they carry (1-3 topics), and their label matrix over LABELS."""
    rng = np.random.default_rng(seed)
    texts, sets = [], []
    for _ in range(rows):
        topics = sorted(rng.choice(sorted(PHRASES), size=rng.integers(1, 4), replace=False))
        texts.append(" and ".join(rng.choice(PHRASES[t]) for t in topics))
        sets.append(label_sets.encode(topics))
    return texts, label_sets.matrix(sets, LABELS).astype(np.int8)


# --------------------------------------------------------------------------- thresholds

def test_thresholds_fix_labels_where_half_is_wrong():
    tuned = multilabel_metrics.tune_thresholds(PROBS, TRUTH, labels=list("abcd"))
    # a: plateau (0.2, 0.3] -> 0.3 (closest to 0.5); b: 0.5 already perfect; c: no positives -> default;
    # d: plateau (0.9, 0.95] -> the midpoint 0.925 beats the grid's 0.95 (closer to 0.5)
    assert tuned["thresholds"] == pytest.approx([0.3, 0.5, 0.5, 0.925])
    assert [row["tuned"] for row in tuned["per_label"]] == [True, True, False, True]
    assert [row["f1_default"] for row in tuned["per_label"]] == pytest.approx([0, 1, 0, 0.5])
    assert [row["f1_tuned"] for row in tuned["per_label"]] == pytest.approx([1, 1, 0, 1])
    # at 0.5: TP 5, FP 5 (c once, d four times), FN 3; tuned: TP 8, FP 1 (c keeps 0.5), FN 0
    assert tuned["micro_f1_default"] == pytest.approx(10 / 18)
    assert tuned["micro_f1_tuned"] == pytest.approx(16 / 17)
    assert (tuned["macro_f1_default"], tuned["macro_f1_tuned"]) == pytest.approx((0.375, 0.75))
    assert tuned["labels_tuned"] == 3 and tuned["per_label"][0]["label"] == "a"
    json.dumps(tuned)                                                      # JSON-ready for training.json


def test_thresholds_default_min_support_and_grid():
    assert multilabel_metrics.tune_thresholds(PROBS, TRUTH, default=0.7)["thresholds"][2] == 0.7
    assert multilabel_metrics.tune_thresholds(PROBS, TRUTH, default=0.7)["micro_f1_tuned"] == 1.0
    few = multilabel_metrics.tune_thresholds(PROBS, TRUTH, min_support=3)          # d has 2 positives: kept
    assert few["thresholds"] == pytest.approx([0.3, 0.5, 0.5, 0.5]) and few["labels_tuned"] == 2
    # a coarse grid (plus 0.5): a's best is 0.2 (TP 3, FP 1 -> F1 6/7); d ties at F1 0.5 everywhere -> 0.5
    coarse = multilabel_metrics.tune_thresholds(PROBS, TRUTH, grid=[0.2, 0.6])
    assert coarse["thresholds"][0] == 0.2 and coarse["per_label"][0]["f1_tuned"] == pytest.approx(6 / 7)
    assert coarse["thresholds"][3] == 0.5
    with pytest.raises(ValueError, match="shape"):
        multilabel_metrics.tune_thresholds(PROBS, TRUTH[:, :3])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        multilabel_metrics.tune_thresholds(PROBS * 2, TRUTH)


def test_tuned_thresholds_reach_the_best_achievable_f1():
    rng = np.random.default_rng(3)
    truth = rng.random((300, 6)) < 0.2
    probs = np.clip(truth * 0.25 + rng.random((300, 6)) * 0.6, 0, 1)     # positives shifted, never to 0.5
    tuned = multilabel_metrics.tune_thresholds(probs, truth, guard_micro_f1=False)
    for j, row in enumerate(tuned["per_label"]):
        best = max(multilabel_metrics.label_f1(truth[:, [j]], probs[:, [j]] >= t)[0] for t in np.unique(probs[:, j]))
        assert row["f1_tuned"] == pytest.approx(best) and row["f1_tuned"] >= row["f1_default"]
    assert tuned["micro_f1_tuned"] > tuned["micro_f1_default"]


def test_a_label_the_model_cannot_separate_keeps_the_default_rather_than_flood_every_prediction():
    truth = np.zeros((20, 2), dtype=bool)
    truth[::2, 0] = True                                   # a: 10 positives, perfectly separated
    truth[[3, 7], 1] = True                                # w: 2 positives, the model scores every row 0.2
    probs = np.column_stack([np.where(truth[:, 0], 0.9, 0.1), np.full(20, 0.2)])
    unguarded = multilabel_metrics.tune_thresholds(probs, truth, guard_micro_f1=False)
    # w's own best F1 is "predict it for every text" (4/22 > 0): 18 false positives, micro-F1 24/42
    assert unguarded["thresholds"][1] == pytest.approx(0.2) and unguarded["micro_f1_tuned"] == pytest.approx(24 / 42)
    guarded = multilabel_metrics.tune_thresholds(probs, truth)
    assert guarded["thresholds"] == pytest.approx([0.5, 0.5])   # a: 0.5 already perfect; w: back to the default
    assert [row["kept_default_for_micro_f1"] for row in guarded["per_label"]] == [False, True]
    assert guarded["micro_f1_tuned"] == pytest.approx(20 / 22) and guarded["micro_f1_tuned"] >= guarded["micro_f1_default"]


# --------------------------------------------------------------------------- metrics

def test_metrics_by_hand_and_against_sklearn():
    from sklearn.metrics import f1_score, hamming_loss

    truth, pred = np.array([[1, 0], [1, 1], [0, 0]]), np.array([[1, 0], [0, 1], [0, 1]])
    scores = multilabel.metrics(truth, pred, ["x", "y"])
    assert scores["micro_f1"] == pytest.approx(2 / 3) and scores["macro_f1"] == pytest.approx(2 / 3)
    assert scores["samples_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)     # empty-vs-{y} row scores 0
    assert scores["subset_accuracy"] == pytest.approx(1 / 3) and scores["hamming_loss"] == pytest.approx(1 / 3)
    assert scores["micro_precision"] == pytest.approx(2 / 3) and scores["macro_recall"] == pytest.approx(0.75)
    assert (scores["label_cardinality_true"], scores["label_cardinality_predicted"]) == (1.0, 1.0)
    assert scores["rows_without_prediction"] == 0 and scores["n"] == 3
    assert scores["per_label"]["x"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert multilabel.confusion_matrices(truth, pred, ["x", "y"]) == {
        "x": {"tn": 1, "fp": 0, "fn": 1, "tp": 1}, "y": {"tn": 1, "fp": 1, "fn": 0, "tp": 1}}

    rng = np.random.default_rng(0)
    truth = (rng.random((200, 7)) < 0.3).astype(int)
    pred = truth ^ (rng.random((200, 7)) < 0.15)
    pred[:5] = 0                                                          # some rows with no label
    scores = multilabel.metrics(truth, pred, list("abcdefg"))
    for average in ("micro", "macro", "samples"):
        assert scores[f"{average}_f1"] == pytest.approx(f1_score(truth, pred, average=average, zero_division=0))
    assert scores["hamming_loss"] == pytest.approx(hamming_loss(truth, pred))
    assert scores["rows_without_prediction"] >= 5
    whole = multilabel.resample_scores(truth, pred, Resamples(np.arange(200)[None], 0.95))
    for metric in (*multilabel.HEADLINE, "hamming_loss"):                # the numpy version agrees
        assert whole[metric][0] == pytest.approx(scores[metric])
    assert multilabel_metrics.decide([[0.2, 0.5]], [0.3, 0.5]).tolist() == [[0, 1]]


# --------------------------------------------------------------------------- bootstrap

def noisy(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.random((rows, 40)) < 0.1
    return truth, truth ^ (rng.random((rows, 40)) < 0.05)


def test_bootstrap_intervals_hold_the_point_and_shrink_with_rows():
    truth, pred = noisy(500)
    started = time.monotonic()
    small = multilabel.summarize(truth, pred, Resamples.draw(500, 1000, 0))
    assert time.monotonic() - started < 3                                # 1000 resamples x 500 rows x 40 labels
    big = multilabel.summarize(np.tile(truth, (4, 1)), np.tile(pred, (4, 1)), Resamples.draw(2000, 1000, 0))
    for metric in (*multilabel.HEADLINE, "hamming_loss"):
        assert small[f"{metric}_ci_low"] <= small[metric] <= small[f"{metric}_ci_high"]
        assert big[metric] == pytest.approx(small[metric])
        assert (big[f"{metric}_ci_high"] - big[f"{metric}_ci_low"]
                < 0.75 * (small[f"{metric}_ci_high"] - small[f"{metric}_ci_low"]))
    same = multilabel.paired_difference(truth, pred, pred, Resamples.draw(500, 200, 1))
    assert same == {"difference": 0.0, "ci_low": 0.0, "ci_high": 0.0, "a_better_share": 0.0}
    better = multilabel.paired_difference(truth, truth, pred, Resamples.draw(500, 200, 1))
    assert better["ci_low"] > 0 and better["a_better_share"] == 1.0


# --------------------------------------------------------------------------- baselines

def test_most_frequent_labels():
    common = np.array([[1, 0, 1], [1, 0, 0], [1, 1, 0], [0, 0, 1]])       # label 0 on 3/4 rows
    assert multilabel_baselines.most_frequent_labels(common, 2).tolist() == [[1, 0, 0], [1, 0, 0]]
    rare = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 1], [0, 0, 0]])         # none over half: the most frequent
    assert multilabel_baselines.most_frequent_labels(rare, 1).tolist() == [[0, 0, 1]]


def test_one_vs_rest_baselines_learn_keyword_topics_and_survive_constant_labels():
    train_texts, train_y = tickets(80, 0)
    test_texts, test_y = tickets(30, 1)
    assert train_y[:, LABELS.index("legal")].sum() == 0
    settings = SimpleNamespace(logreg_c=10.0, max_train_rows=None, batch_size=16)
    results = multilabel_baselines.run(["majority", "tfidf_logreg"], train_texts, train_y, test_texts, settings,
                                       "unused", None, 64, seed=0)
    by_name = {r.name: r for r in results}
    tfidf = by_name["tfidf_logreg"].y_pred
    assert tfidf.shape == (30, 4) and not tfidf[:, LABELS.index("legal")].any()
    assert multilabel_metrics.micro_f1(test_y, tfidf) > 0.9                       # the topics are keyword-separable
    always = train_y.copy()
    always[:, LABELS.index("legal")] = 1                                  # present on every row: constant 1
    assert multilabel_baselines.tfidf_logreg(train_texts, always, test_texts, 10.0, 0)[:, 2].all()
    comparison = multilabel_baselines.compare(test_y, test_y, results, Resamples.draw(30, 200, 0))
    assert comparison["best_baseline"] == "tfidf_logreg"
    assert comparison["margin"]["micro_f1"]["difference"] >= 0
    assert comparison["models"]["majority"]["micro_f1"] < comparison["models"]["tfidf_logreg"]["micro_f1"]
    assert "margin over the best baseline (`tfidf_logreg`)" in multilabel_baselines.markdown(comparison)
    with pytest.raises(UserError, match=r"unknown baseline\(s\) \['bert'\]"):
        multilabel_baselines.run(["bert"], train_texts, train_y, test_texts, settings, "unused", None, 64, 0)
    assert len(multilabel_baselines.subsample(80, 30, 0)) == 30


def test_frozen_embeddings_baseline_on_the_tiny_model(tiny_model_dir):
    train_texts, train_y = tickets(40, 0)
    test_texts, _ = tickets(10, 1)
    pred = multilabel_baselines.frozen_embeddings(str(tiny_model_dir), train_texts, train_y, test_texts,
                                                  compute.select("cpu", "fp32", 1), 64, 16, 10.0, 0)
    assert pred.shape == (10, 4) and set(np.unique(pred)) <= {0, 1} and not pred[:, 2].any()


# --------------------------------------------------------------------------- report and files

def report_inputs():
    texts = ["charged twice", "parcel late", "no login", "wrong invoice and parcel late"]
    truth = np.array([[0, 1, 0, 0], [0, 0, 0, 1], [1, 0, 0, 0], [0, 1, 0, 1]])
    pred = np.array([[0, 1, 0, 0], [0, 0, 0, 0], [1, 0, 0, 1], [0, 1, 0, 0]])
    return texts, truth, pred


def test_errors_predictions_and_markdown(tmp_path):
    texts, truth, pred = report_inputs()
    errors = multilabel_report.frequent_errors(texts, LABELS, truth, pred)
    assert errors["missed"] == [{"label": "shipping", "count": 2, "examples": ["parcel late",
                                                                              "wrong invoice and parcel late"]}]
    assert errors["added"] == [{"label": "shipping", "count": 1, "examples": ["no login"]}]
    table = multilabel_report.predictions_table(texts, LABELS, truth, pred)
    assert table.loc[3].to_dict() == {"text": "wrong invoice and parcel late", "actual": '["billing", "shipping"]',
                                      "predicted": '["billing"]', "missed": '["shipping"]', "added": "[]"}

    scores = multilabel.metrics(truth, pred, LABELS)
    majority = BaselineResult("majority", "", np.tile([0, 1, 0, 0], (4, 1)), 4, 0.0)
    comparison = multilabel_baselines.compare(truth, pred, [majority], Resamples.draw(4, 100, 0))
    thresholds = [0.4, 0.5, 0.5, 0.35]
    text = multilabel_report.evaluation_markdown(scores, comparison, errors, thresholds)
    assert "# Evaluation on the test split (multi-label)" in text and "| micro-F1 | 0.6667 | [" in text
    assert "range 0.35-0.50" in text and "## Fine-tune against baselines" in text
    per_label = text.split("## Per label (worst first)")[1]
    # worst first: F1 0 (shipping, support 2, before legal, support 0), then F1 1 (billing, support 2, first)
    order = [per_label.index(row) for row in ("| shipping | 0.3500 |", "| legal |", "| billing |", "| account |")]
    assert order == sorted(order)
    assert "- **shipping** (2×): “parcel late” · “wrong invoice and parcel late”" in text
    assert "reaches 0.5 (the same threshold for all)" in multilabel_report.evaluation_markdown(
        scores, comparison, errors, [0.5] * 4)
    names = multilabel_report.mlflow_metrics(comparison, scores, lambda label: label)
    assert names["test/micro_f1"] == pytest.approx(2 / 3) and "test/per_label/f1/legal" in names
    assert {"test/hamming_loss", "test/subset_accuracy_ci_low", "baseline/majority/macro_f1",
            "test/margin_over_best_baseline/micro_f1"} <= set(names)

    test = pd.DataFrame({"text": texts, "source": ["a", "b", "c", "d"],
                         "label": [label_sets.encode(s) for s in label_sets.sets_from_matrix(truth, LABELS)]})
    probs = np.where(pred, 0.8, 0.1).astype(np.float32)
    multilabel_report.save_predictions(tmp_path / "predictions.parquet", test, LABELS, probs, pred)
    frame, loaded, names = failures.load_predictions(tmp_path / "predictions.parquet")
    assert names == LABELS and np.array_equal(loaded, probs)
    assert list(frame.columns) == ["text", "actual", "predicted", "source"]
    assert frame["actual"].tolist() == test["label"].tolist()


def test_confusion_grid_shows_the_worst_labels_first(tmp_path):
    labels = [f"label_{i:02d}" for i in range(30)]
    per_label = {label: {"f1": i / 30, "support": 5} for i, label in enumerate(labels)}
    confusion = {label: {"tn": 10, "fp": 1, "fn": 2, "tp": 3} for label in labels}
    fig = multilabel_report.plot_confusion_grid(confusion, per_label, tmp_path / "grid.png", True, "Per-label")
    assert (tmp_path / "grid.png").stat().st_size > 1000
    titles = [ax.get_title() for ax in fig.axes if ax.axison]
    assert len(titles) == 24 and titles[0].startswith("label_00") and titles[-1].startswith("label_23")
    assert "the 24 worst of 30 labels" in fig._suptitle.get_text()


# --------------------------------------------------------------------------- the stage's branch

class KeywordPredictor:
    """Stands in for a multi-label Predictor: per-label 'sigmoid' scores from keywords."""
    labels = LABELS
    max_length = 64
    meta = {"task": "multi_label", "base_model": "unused"}
    thresholds = np.array([0.5, 0.5, 0.5, 0.5])
    keys = {"account": "log in|password|email", "billing": "charged|invoice|fee",
            "shipping": "parcel|tracking|delivery"}

    def predict_proba(self, texts, batch_size=256, progress=False):
        series = pd.Series(texts)
        return np.column_stack([series.str.contains(self.keys[label]).to_numpy() * 0.8 + 0.1
                                if label in self.keys else np.full(len(texts), 0.1) for label in LABELS])


def test_stage_branch_writes_the_evaluate_outputs(tmp_path, monkeypatch):
    import mlflow
    from omegaconf import OmegaConf

    from hfclf.evaluate import stage

    processed = tmp_path / "data/processed"
    processed.mkdir(parents=True)
    for split, (rows, seed) in {"train": (60, 0), "test": (25, 1)}.items():
        texts, y = tickets(rows, seed)
        pd.DataFrame({"text": texts, "label": [label_sets.encode(s) for s in label_sets.sets_from_matrix(y, LABELS)]}
                     ).to_parquet(processed / f"{split}.parquet")
    (processed / "labels.json").write_text(json.dumps({"task": "multi_label", "labels": LABELS}))
    logged = {}
    monkeypatch.setattr(stage.tracking, "model_run", lambda cfg, model_dir: contextlib.nullcontext())
    monkeypatch.setattr(stage.tracking, "log_datasets", lambda *a, **k: None)
    monkeypatch.setattr(stage.tracking, "log_report_files", lambda paths: logged.setdefault("files", paths))
    monkeypatch.setattr(mlflow, "log_metrics", lambda values: logged.setdefault("metrics", values))
    for name in ("log_figure", "log_table", "log_text"):
        monkeypatch.setattr(mlflow, name, lambda obj, path: logged.setdefault(path, obj))
    cfg = OmegaConf.create({
        "paths": {"processed": str(processed), "model_dir": str(tmp_path / "model"),
                  "reports": str(tmp_path / "reports"), "figures": str(tmp_path / "reports/figures")},
        "evaluate": {"batch_size": 8, "bootstrap": {"samples": 200, "confidence": 0.95},
                     "baselines": {"run": ["majority", "tfidf_logreg"], "logreg_c": 10.0, "max_train_rows": None,
                                   "batch_size": 8}},
        "compute": {"seed": 0}, "model": {"name": "unused"}})
    stage.evaluate_multi_label(cfg, KeywordPredictor(), pd.read_parquet(processed / "test.parquet"), None)

    reports = tmp_path / "reports"
    headline = json.loads((reports / "metrics.json").read_text())
    assert headline["task"] == "multi_label" and headline["micro_f1"] == 1.0 and headline["subset_accuracy"] == 1.0
    assert set(headline["baselines"]) == {"majority", "tfidf_logreg"} and headline["best_baseline"] == "tfidf_logreg"
    assert headline["micro_f1_ci_low"] <= 1.0 and "micro_f1" in headline["margin_over_best_baseline"]
    per_class = json.loads((reports / "per_class.json").read_text())
    assert per_class["legal"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0, "threshold": 0.5,
                                  "tn": 25, "fp": 0, "fn": 0, "tp": 0}
    csv = pd.read_csv(reports / "predictions.csv")
    assert csv.columns.tolist() == ["text", "actual", "predicted", "missed", "added"] and len(csv) == 25
    assert failures.load_predictions(reports / "predictions.parquet")[2] == LABELS
    for figure in ("confusion_matrix.png", "confusion_matrix_normalized.png"):
        assert (reports / "figures" / figure).exists() and f"figures/{figure}" in logged
    assert "# Evaluation on the test split (multi-label)" in (reports / "evaluation.md").read_text()
    assert logged["metrics"]["test/micro_f1"] == 1.0 and "test/per_label/f1/billing" in logged["metrics"]
    assert "baseline/tfidf_logreg/micro_f1" in logged["metrics"]
    assert list(logged["tables/confusion_matrix.json"].columns) == ["label", "tn", "fp", "fn", "tp"]

    single = pd.DataFrame({"text": ["x"], "label": ["billing"]})
    (processed / "labels.json").write_text(json.dumps({"labels": LABELS}))
    with pytest.raises(UserError, match="single-label"):
        stage.evaluate_multi_label(cfg, KeywordPredictor(), single, None)


def test_model_thresholds():
    from hfclf.evaluate.stage import model_thresholds

    predictor = SimpleNamespace(labels=LABELS, meta={}, thresholds=None)
    assert model_thresholds(predictor).tolist() == [0.5] * 4
    predictor.meta = {"thresholds": [0.2, 0.3, 0.4, 0.5]}
    assert model_thresholds(predictor).tolist() == [0.2, 0.3, 0.4, 0.5]
    predictor.meta = {"thresholds": {"legal": 0.9, "account": 0.1, "billing": 0.2, "shipping": 0.3}}
    assert model_thresholds(predictor).tolist() == [0.1, 0.2, 0.9, 0.3]
    predictor.meta = {"thresholds": {"legal": 0.9}}
    with pytest.raises(UserError, match=r"no threshold for label\(s\) \['account', 'billing', 'shipping'\]"):
        model_thresholds(predictor)
    predictor.thresholds = np.array([0.1, 0.2])
    with pytest.raises(UserError, match="4 labels but 2 thresholds"):
        model_thresholds(predictor)
