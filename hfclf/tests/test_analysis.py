"""Honest evaluation and failure analysis, piece by piece: perturbations, bootstrap intervals,
calibration and abstain thresholds, baselines, slices, probe files (bad ones get clear messages),
suggestions, and the switches they name (typo augmentation, saved abstain threshold, UNKNOWN class)."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from conftest import run_stage
from hfclf.analyze import failures, improvements
from hfclf.evaluate import baselines, bootstrap, metrics
from hfclf.train import calibration, modeling, augment, loop
from hfclf.infra import compute
from hfclf.data import probes
from hfclf.infra.errors import UserError

LABELS = ["ACCOUNT", "ORDER", "REFUND"]
TEXT = "Hello, I would like to cancel my order from yesterday please!"


@pytest.fixture(scope="module")
def out_of_scope(baked_project):
    """The out-of-scope probe file a baked project ships with."""
    return baked_project / "data" / "out_of_scope" / "default.txt"


# --------------------------------------------------------------------------- perturbations

@pytest.mark.parametrize("name", sorted(augment.PERTURBATIONS))
def test_each_perturbation_is_seeded_and_changes_the_text(name):
    first = augment.apply(name, [TEXT] * 5, seed=3, rate=0.1)
    assert first == augment.apply(name, [TEXT] * 5, seed=3, rate=0.1)
    assert all(t != TEXT for t in first)


def test_perturbations_do_what_they_say():
    rng = np.random.default_rng(0)
    typo = augment.typos(TEXT, rng, rate=0.0)                # rate 0 still makes one typo
    assert sum(a != b for a, b in zip(typo.split(), TEXT.split())) == 1
    assert augment.punctuation(TEXT, rng) == "Hello I would like to cancel my order from yesterday please"
    dropped = augment.word_dropout(TEXT, rng, rate=0.0)
    assert len(dropped.split()) == len(TEXT.split()) - 1
    assert augment.word_dropout("order", rng, rate=1.0) == "order"          # one word stays
    assert augment.casing(TEXT, rng).lower() == TEXT.lower()
    assert augment.typos("hi 12 ok", rng) == "hi 12 ok"                     # nothing eligible, nothing changed


def test_augmenter_perturbs_a_fraction_afresh_each_epoch():
    texts = [f"please cancel my order number {i} today" for i in range(400)]
    draw = augment.augmenter(["typos"], rate=0.1, fraction=0.5, seed=1)
    epoch0, epoch1 = draw(texts, 0), draw(texts, 1)
    changed = np.mean([a != b for a, b in zip(epoch0, texts)])
    assert 0.4 < changed < 0.6
    assert epoch0 == draw(texts, 0) and epoch0 != epoch1
    assert augment.augmenter_from({"typos": False, "rate": 0.1}, 0) is None
    with pytest.raises(UserError, match=r"train.augment has unknown perturbation\(s\) \['typo'\]"):
        augment.augmenter(["typo"], 0.1, 0.5, 0)


# --------------------------------------------------------------------------- bootstrap

def test_bootstrap_intervals_contain_the_point_and_are_seeded():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 300)
    pred = np.where(rng.random(300) < 0.8, y, (y + 1) % 4)
    resamples = bootstrap.Resamples.draw(len(y), 500, seed=7)
    s = bootstrap.summarize(y, pred, 4, resamples)
    assert s["accuracy_ci_low"] < s["accuracy"] < s["accuracy_ci_high"]
    assert s["macro_f1_ci_low"] < s["macro_f1"] < s["macro_f1_ci_high"]
    assert s["macro_f1"] == pytest.approx(metrics.macro_f1(y, pred, 4))
    assert s == bootstrap.summarize(y, pred, 4, bootstrap.Resamples.draw(len(y), 500, seed=7))
    assert 0.05 < s["accuracy_ci_high"] - s["accuracy_ci_low"] < 0.15       # ~ 4 standard errors of 300 rows
    perfect = bootstrap.summarize(y, y, 4, resamples)
    assert perfect["accuracy_ci_low"] == perfect["macro_f1_ci_low"] == 1.0


def test_paired_difference_of_a_model_with_itself_is_zero():
    y = np.arange(100) % 3
    pred = np.where(np.arange(100) % 10 == 0, (y + 1) % 3, y)
    resamples = bootstrap.Resamples.draw(100, 200, seed=0)
    same = bootstrap.paired_difference(y, pred, pred, 3, resamples)
    assert same["difference"] == same["ci_low"] == same["ci_high"] == 0.0
    better = bootstrap.paired_difference(y, y, pred, 3, resamples, "accuracy")
    assert better["difference"] == pytest.approx(0.1) and better["ci_low"] > 0 and better["a_better_share"] > 0.95


# --------------------------------------------------------------------------- calibration and thresholds

def test_expected_calibration_error_on_known_bins():
    conf = np.array([0.95] * 10 + [0.55] * 10)
    correct = np.array([True] * 10 + [True] * 5 + [False] * 5)
    # bin 0.95: accuracy 1.0 (gap 0.05); bin 0.55: accuracy 0.5 (gap 0.05) -> ECE 0.05
    assert calibration.expected_calibration_error(conf, correct, bins=10) == pytest.approx(0.05)
    bins = calibration.reliability(conf, correct, bins=10)
    assert [b["n"] for b in bins] == [10, 10] and bins[1]["accuracy"] == 1.0


def test_threshold_is_the_lowest_that_reaches_the_target_precision():
    conf = np.array([0.99, 0.98, 0.97, 0.90, 0.80, 0.70, 0.60, 0.50])
    correct = np.array([1, 1, 1, 1, 0, 1, 0, 1], dtype=bool)
    choice = calibration.choose_threshold(conf, correct, target_precision=0.8)
    assert choice.threshold == pytest.approx(0.70) and choice.coverage == 6 / 8 and choice.precision == 5 / 6
    strict = calibration.choose_threshold(conf, correct, target_precision=1.0)
    assert strict.threshold == pytest.approx(0.90) and strict.coverage == 0.5
    easy = calibration.choose_threshold(conf, correct, target_precision=0.5)
    assert easy.threshold == 0.0 and easy.coverage == 1.0                  # no threshold needed
    ties = calibration.choose_threshold(np.array([0.9, 0.9, 0.8]), np.array([True, False, True]), 1.0)
    assert ties.threshold is None                                         # never splits equal confidences
    with pytest.raises(UserError, match="target precision must be in"):
        calibration.choose_threshold(conf, correct, 1.5)


def test_fit_abstain_threshold_on_a_constructed_validation_set():
    """Ten validation rows with known confidences and correctness; the expected threshold, precision
    and coverage are worked out by hand, not with the code under test."""
    top = [0.95, 0.92, 0.90, 0.85, 0.80, 0.75, 0.70, 0.65, 0.60, 0.55]
    predicted = [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
    probs = np.array([[c if j == k else (1 - c) / 2 for j in range(3)] for c, k in zip(top, predicted)])
    right = [True, True, True, True, False, True, True, False, True, False]
    y = np.array([k if ok else (k + 1) % 3 for k, ok in zip(predicted, right)])

    class FixedPredictor:
        def predict_proba(self, texts, batch_size=256):
            assert len(texts) == len(probs)
            return probs

    texts = [f"t{i}" for i in range(10)]
    # kept at 0.95..0.85: 4/4; at 0.80: 4/5; at 0.75: 5/6; at 0.70: 6/7; at 0.65: 6/8; at 0.60: 7/9; all: 7/10
    choice = calibration.fit_abstain_threshold(FixedPredictor(), texts, y, target_precision=0.8)
    assert choice.threshold == pytest.approx(0.70) and choice.coverage == pytest.approx(0.7)
    assert choice.precision == pytest.approx(6 / 7) and choice.baseline_precision == pytest.approx(0.7)
    strict = calibration.fit_abstain_threshold(FixedPredictor(), texts, y, target_precision=0.9)
    assert strict.threshold == pytest.approx(0.85) and strict.coverage == pytest.approx(0.4) and strict.precision == 1.0
    loose = calibration.fit_abstain_threshold(FixedPredictor(), texts, y, target_precision=0.7)
    assert loose.threshold == 0.0 and loose.coverage == 1.0                # everything kept already reaches 0.7
    kept = calibration.apply_threshold(probs.max(1), probs.argmax(1) == y, choice.threshold)
    assert kept == {"coverage": pytest.approx(0.7), "precision": pytest.approx(6 / 7)}


# --------------------------------------------------------------------------- baselines

def test_baselines_train_on_train_and_score_the_test_rows(tickets, tiny_model_dir):
    y = tickets["category"].map({l: i for i, l in enumerate(LABELS)}).to_numpy()
    texts = tickets["instruction"].tolist()
    settings = SimpleNamespace(logreg_c=10.0, max_train_rows=None, batch_size=16)
    hw = compute.select("cpu", "fp32", 1)
    results = baselines.run(["majority", "tfidf_logreg", "frozen_embeddings"], texts[:60], y[:60], texts[60:],
                            settings, str(tiny_model_dir), hw, 64, seed=0)
    by_name = {r.name: r for r in results}
    assert set(by_name["majority"].y_pred) == {np.bincount(y[:60]).argmax()}
    assert (by_name["tfidf_logreg"].y_pred == y[60:]).mean() > 0.9         # the topics are keyword-separable
    assert len(by_name["frozen_embeddings"].y_pred) == 30
    comparison = baselines.compare(y[60:], y[60:], results, 3, bootstrap.Resamples.draw(30, 100, 0))
    assert comparison["best_baseline"] in by_name and comparison["margin"]["macro_f1"]["difference"] >= 0
    assert "margin over the best baseline" in baselines.markdown(comparison)
    with pytest.raises(UserError, match=r"unknown baseline\(s\) \['bert'\]"):
        baselines.run(["bert"], texts, y, texts, settings, str(tiny_model_dir), hw, 64, 0)
    assert len(baselines.subsample(90, y, 30, 0)) == 30


def test_embeddings_do_not_depend_on_batching(tiny_model_dir):
    from transformers import AutoModel, AutoTokenizer

    tokenizer, model = AutoTokenizer.from_pretrained(tiny_model_dir), AutoModel.from_pretrained(tiny_model_dir)
    hw = compute.select("cpu", "fp32", 1)
    texts = ["short", "a somewhat longer text about refunds", "medium length order text"]
    together = baselines.embed(model, tokenizer, texts, hw, 64, batch_size=3)
    alone = np.vstack([baselines.embed(model, tokenizer, [t], hw, 64, 1) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)


# --------------------------------------------------------------------------- slices

def test_slices_flag_the_weak_slice_and_split_flag_letters():
    n = 200
    frame = pd.DataFrame({"text": ["word " * (1 + i % 12) for i in range(n)],
                          "tags": ["BZ" if i % 4 == 0 else "BL" for i in range(n)],
                          "channel": ["mail" if i % 2 else "chat" for i in range(n)]})
    correct = np.ones(n, dtype=bool)
    correct[np.arange(0, n, 4)[:20]] = False                              # errors only where tags has Z
    settings = SimpleNamespace(length_buckets=3, min_rows=10, max_values=5, flag_below=0.05,
                               flag_columns={"tags": {"Z": "errors and typos"}})
    rows = {s["slice"]: s for s in failures.slices(frame, correct, settings)}
    assert rows["tags ∋ Z (errors and typos)"]["flagged"] and rows["tags ∋ Z (errors and typos)"]["accuracy"] == 0.6
    assert not rows["tags ∋ L"]["flagged"] and "channel = mail" in rows
    assert sum(s["kind"] == "length" for s in rows.values()) == 3
    low, high = failures.wilson(9, 10)
    assert low < 0.9 < high <= 1.0


# --------------------------------------------------------------------------- probe files

def test_out_of_scope_files_read_and_bad_ones_explained(tmp_path, out_of_scope):
    texts = probes.read_out_of_scope(out_of_scope, "instruction")
    assert len(texts) >= 50 and not any(t.startswith("#") for t in texts)
    (tmp_path / "oos.csv").write_text("body\nwhat is the weather\n")
    with pytest.raises(UserError, match=r"oos.csv' has no text column \('text' or 'instruction'\). Its columns are: body"):
        probes.read_out_of_scope(tmp_path / "oos.csv", "instruction")
    (tmp_path / "labelled.csv").write_text("text,category\nwhere is my order,ORDER\nweather today,\n")
    with pytest.raises(UserError, match=r"column 'category' has label\(s\) \['ORDER'\].*classes of the model"):
        probes.read_out_of_scope(tmp_path / "labelled.csv", "instruction", "category", LABELS)
    (tmp_path / "empty.txt").write_text("# only a comment\n\n")
    with pytest.raises(UserError, match="has no texts"):
        probes.read_out_of_scope(tmp_path / "empty.txt", "instruction")
    with pytest.raises(UserError, match="does not exist"):
        probes.read_out_of_scope(tmp_path / "missing.txt", "instruction")


def test_challenge_files_need_text_label_and_known_labels(tmp_path):
    good = tmp_path / "good.csv"
    pd.DataFrame({"instruction": ["refund pls", "pasword reset"], "category": ["REFUND", "ACCOUNT"]}).to_csv(good, index=False)
    frame = probes.read_challenge(good, "instruction", "category", LABELS)
    assert list(frame[["text", "label"]].itertuples(index=False, name=None)) == [("refund pls", "REFUND"),
                                                                                 ("pasword reset", "ACCOUNT")]
    (tmp_path / "nolabel.csv").write_text("text\nrefund pls\n")
    with pytest.raises(UserError, match=r"nolabel.csv' has no label column \('label' or 'category'\). Its columns are: text"):
        probes.read_challenge(tmp_path / "nolabel.csv", "instruction", "category", LABELS)
    (tmp_path / "unknown.csv").write_text("text,label\nrefund pls,REFUNDS\nhi,ORDER\n")
    with pytest.raises(UserError, match=r"label\(s\) the model does not know: \['REFUNDS'\]. Known labels: ACCOUNT, ORDER"):
        probes.read_challenge(tmp_path / "unknown.csv", "instruction", "category", LABELS)
    (tmp_path / "blank.csv").write_text("text,label\nrefund pls,\nhi,ORDER\n")
    with pytest.raises(UserError, match=r"1 row\(s\) without a label \(e.g. file lines \[2\]\)"):
        probes.read_challenge(tmp_path / "blank.csv", "instruction", "category", LABELS)


def test_out_of_scope_texts_become_an_unknown_class_in_every_split(tickets, out_of_scope):
    frames = {name: tickets.rename(columns={"instruction": "text", "category": "label"}).iloc[i::3]
              for i, name in enumerate(("train", "validation", "test"))}
    texts = probes.read_out_of_scope(out_of_scope, "instruction")
    out = probes.add_out_of_scope(frames, texts, 0.1, 0.1, seed=0)
    counts = {name: int((f["label"] == probes.UNKNOWN).sum()) for name, f in out.items()}
    assert sum(counts.values()) == len(set(texts)) and min(counts.values()) >= 1
    assert counts["train"] > counts["test"]
    with pytest.raises(UserError, match="at least 3 are needed"):
        probes.add_out_of_scope(frames, ["a", "b"], 0.1, 0.1, 0)


# --------------------------------------------------------------------------- suggestions

def test_a_run_that_ran_out_of_epochs_still_rising_is_told_to_train_longer():
    """Debian sections, 2,504 rows: runs that reached the bound of 10 with their best pass in the last
    epoch. Training records what that epoch added; analyze turns it into a longer bound."""
    from hfclf.train import convergence

    history = [{"epoch": e, "val_macro_f1": f} for e, f in
               ((8.25, 0.47), (8.5, 0.49), (8.75, 0.48), (9.0, 0.48), (9.25, 0.50), (9.5, 0.5131), (9.75, 0.50))]
    assert convergence.rise_into_best(history, 9.5, "val_macro_f1") == pytest.approx(0.0231)  # over the 8.5 pass
    assert convergence.rise_into_best(history, 8.5, "val_macro_f1") is None     # no pass an epoch earlier

    def bound_rules(meta: dict) -> list[improvements.Suggestion]:
        return [s for s in improvements.suggest(fake_analysis(0.5), {}, {}, LIMITS, 0.999,
                                                {"best_val_macro_f1": 0.5131} | meta)
                if s.switch.startswith("train.max_epochs")]

    rising = {"max_epochs": 10, "epochs_run": 10.0, "stop_reason": "completed", "best_epoch": 9.5,
              "rise_into_best": 0.0231}
    [longer] = bound_rules(rising)
    assert longer.switch == "train.max_epochs=20" and longer.priority == pytest.approx(2.31)
    assert "ran to its epoch bound (10 epochs) without converging" in longer.finding
    assert "(at 9.5 epochs), 2.31 points above every pass an epoch earlier" in longer.finding
    assert "rose 2.31 points over the last epoch (measured on validation)" in longer.effect
    # stopped by patience, best pass before the last epoch, or a model saved without the figures: no claim
    for meta in ({**rising, "stop_reason": "early_stopping"}, {**rising, "best_epoch": 8.75},
                 {k: v for k, v in rising.items() if k != "rise_into_best"}):
        assert bound_rules(meta) == []
    # multi-label alike, in micro-F1
    from test_multilabel_analysis import constructed_analysis
    multi = improvements.suggest_multi_label(constructed_analysis(), {}, {}, improvements.Limits(),
                                             {**rising, "best_val_micro_f1": 0.6})
    assert any(s.switch == "train.max_epochs=20" and "best validation micro-F1 pass" in s.finding for s in multi)


def fake_analysis(typo_drop: float, oos_confident: float = 0.0) -> dict:
    return {"robustness": {"perturbations": [
                {"perturbation": "typos", "drop_points": typo_drop, "accuracy": 0.9, "clean_accuracy": 0.96},
                {"perturbation": "casing", "drop_points": 0.0, "accuracy": 0.96, "clean_accuracy": 0.96}]},
            "confidence": {"ece": 0.01, "accuracy": 0.96},
            "out_of_scope": {"saved_threshold": None, "model_has_unknown_class": False,
                             "recommended": {"threshold": 0.9, "coverage": 0.97, "precision": 0.999,
                                             "out_of_scope_rejected": {"default": 0.9}},
                             "sets": {"default": {"share_confidence_over_0.5": oos_confident}}},
            "slices": [], "challenge": None}


LIMITS = SimpleNamespace(min_drop_points=2.0, max_ece=0.05, max_out_of_scope_confident=0.2,
                         min_out_of_scope_rejected=0.8, min_margin_points=1.0)


def test_suggestions_follow_the_numbers_and_name_their_switch():
    found = improvements.suggest(fake_analysis(6.1, 0.6), {}, {}, LIMITS, 0.999, {})
    switches = [s.switch for s in found]
    assert switches[0] == "train.augment.typos=true"                      # largest stake first
    assert "train.abstain.target_precision=0.999" in switches
    typo = found[0]
    assert "6.1 accuracy points" in typo.finding
    assert typo.command == "dvc exp run -S conf/train.yaml:train.augment.typos=true"
    with_aug = improvements.suggest(fake_analysis(6.1), {}, {"typos": True, "rate": 0.1}, LIMITS, 0.999, {})
    assert [s.switch for s in with_aug] == ["train.augment.rate=0.2"]      # already on: augment more
    assert improvements.suggest(fake_analysis(0.5), {}, {}, LIMITS, 0.999, {}) == []
    assert "no change is suggested" in improvements.markdown([], LIMITS)
    data_switch = improvements.Suggestion("f", "a", "data.out_of_scope=data/raw/oos.txt", 1.0)
    assert data_switch.command == "dvc exp run -S conf/data/default.yaml:out_of_scope=data/raw/oos.txt"


# --------------------------------------------------------------------------- the switches in training

def test_augmentation_redraws_training_texts_each_epoch(tiny_model_dir, tickets):
    tokenizer, model, _ = modeling.load_for_training(str(tiny_model_dir), LABELS, seed=0)
    y = tickets["category"].map({l: i for i, l in enumerate(LABELS)}).to_numpy()
    texts = tickets["instruction"].tolist()
    calls = []
    typos = augment.augmenter(["typos"], 0.2, 1.0, seed=0)

    def counting(batch, epoch):
        calls.append(epoch)
        return typos(batch, epoch)
    settings = loop.TrainSettings(epochs=2, batch_size=16, learning_rate=1e-2, freeze_embeddings=False,
                                      early_stopping_patience=2, seed=0)
    result = loop.train(model, tokenizer, texts, y, texts, y, settings, compute.select("cpu", "fp32", 1),
                            augment=counting)
    assert calls == [0, 1] and result.steps == 2 * int(np.ceil(len(texts) / 16))


def test_pipeline_with_switches_on_and_bad_probe_files(workdir, tickets, tiny_model_dir, tmp_path, out_of_scope):
    """prepare with an UNKNOWN class, train with typo augmentation and a saved abstain threshold,
    evaluate with baselines, analyze with a challenge set; then bad probe files fail cleanly."""
    tickets.to_csv(workdir / "tickets.csv", index=False)
    oos = workdir / "oos.txt"
    oos.write_text("\n".join(probes.read_out_of_scope(out_of_scope, "instruction")[:30]), encoding="utf-8")
    run_stage(workdir, "prepare", "data.source=tickets.csv", f"data.out_of_scope={oos}",
              "prepare.validation_size=0.2", "prepare.test_size=0.2", "prepare.split=stratified")
    labels = json.loads((workdir / "data/processed/labels.json").read_text())["labels"]
    assert "UNKNOWN" in labels
    run_stage(workdir, "train", f"model.name={tiny_model_dir}", "model.freeze_embeddings=false", "train.max_epochs=3",
              "train.learning_rate=1e-2", "train.batch_size=8", "compute.device=cpu", "train.augment.typos=true",
              "train.augment.rate=0.2", "train.abstain.target_precision=0.9",
              "train.calibrate=false")   # exact recomputation below; calibration: test_calibration.py
    meta = json.loads((workdir / "models/model/classifier.json").read_text())
    assert meta["augment"]["typos"] is True
    assert meta["abstain"]["target_precision"] == 0.9 and meta["abstain_threshold"] == meta["abstain"]["threshold"]
    # the saved threshold, recomputed independently on the validation split it was chosen on: the
    # lowest confidence whose kept predictions reach precision 0.9, with the coverage and precision saved
    predictor = modeling.Predictor.from_dir(workdir / "models/model")
    assert predictor.threshold == meta["abstain_threshold"]
    validation = pd.read_parquet(workdir / "data/processed/validation.parquet")
    probs = predictor.predict_proba(validation["text"].tolist())
    conf = probs.max(1).astype(float)
    correct = np.array([predictor.labels[i] for i in probs.argmax(1)]) == validation["label"].to_numpy()
    eps = 1e-5                                   # the stage batched differently: tiny float differences
    kept_at = {t: conf >= t - eps for t in sorted(set(np.round(conf, 6)), reverse=True)}
    reaching = [t for t, kept in kept_at.items() if correct[kept].mean() >= 0.9]
    threshold = meta["abstain_threshold"]
    if not reaching:
        assert threshold is None and meta["abstain"]["coverage"] == 0.0
    else:
        lowest = min(reaching)
        if lowest == min(kept_at):               # every row kept: no threshold needed
            assert threshold == 0.0
        else:
            assert threshold == pytest.approx(lowest, abs=eps)
        kept = conf >= threshold - eps
        assert meta["abstain"]["coverage"] == pytest.approx(kept.mean())
        assert meta["abstain"]["precision"] == pytest.approx(correct[kept].mean()) and correct[kept].mean() >= 0.9
        assert meta["abstain"]["baseline_precision"] == pytest.approx(correct.mean())
        below = [t for t in kept_at if t < lowest]
        assert not below or correct[kept_at[max(below)]].mean() < 0.9    # one step lower misses the target
        # prediction says UNKNOWN exactly below the threshold
        said = np.array([p.label for p in predictor.predict(validation["text"].tolist())])
        clear = np.abs(conf - threshold) > eps
        assert ((said == "UNKNOWN") == (conf < threshold))[clear].all()

    run_stage(workdir, "evaluate", "evaluate.bootstrap.samples=200")
    metrics_json = json.loads((workdir / "reports/metrics.json").read_text())
    assert metrics_json["accuracy_ci_low"] <= metrics_json["accuracy"] <= metrics_json["accuracy_ci_high"]
    assert set(metrics_json["baselines"]) == {"majority", "tfidf_logreg", "frozen_embeddings"}
    evaluation = (workdir / "reports/evaluation.md").read_text()
    assert "## Fine-tune against baselines" in evaluation and "margin over the best baseline" in evaluation
    saved = pd.read_parquet(workdir / "reports/predictions.parquet")
    assert {f"prob:{label}" for label in labels} <= set(saved.columns) and "tags" in saved.columns

    challenge = workdir / "challenge.csv"
    pd.DataFrame({"text": ["refnd my mony", "pasword reset plz"], "label": ["REFUND", "ACCOUNT"]}).to_csv(
        challenge, index=False)
    files = f"analyze.out_of_scope.files=[{out_of_scope}]"
    run_stage(workdir, "analyze", files, f"analyze.challenge.path={challenge}", "analyze.slices.min_rows=3")
    report = (workdir / "reports/failure_analysis.md").read_text()
    for section in ("## Confidence and calibration", "## Slices", "## Robustness", "## Out of scope",
                    "## Challenge set", "figures/reliability_diagram.png", "predicted UNKNOWN"):
        assert section in report, section
    for figure in ("confidence_histogram", "reliability_diagram", "slices", "robustness", "out_of_scope"):
        assert (workdir / "reports/figures" / f"{figure}.png").stat().st_size > 1000
    summary = json.loads((workdir / "reports/analysis_metrics.json").read_text())
    assert {"ece", "robustness_drop_typos", "challenge_accuracy"} <= set(summary)
    assert (workdir / "reports/improvements.md").read_text().startswith("# Improvements")

    before = {p: (workdir / "reports" / p).read_bytes() for p in ("metrics.json", "evaluation.md",
                                                                  "failure_analysis.md", "predictions.parquet")}
    bad = workdir / "bad.csv"
    bad.write_text("text,label\nrefund pls,REFUNDS\n")
    result = run_stage(workdir, "analyze", files, f"analyze.challenge.path={bad}", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr + result.stdout
    assert "challenge file" in result.stderr and "does not know: ['REFUNDS']" in result.stderr
    (workdir / "bad_oos.csv").write_text("body\nthe weather\n")
    result = run_stage(workdir, "analyze", f"analyze.out_of_scope.files=[{workdir / 'bad_oos.csv'}]", check=False)
    assert result.returncode == 2 and "has no text column" in result.stderr
    assert {p: (workdir / "reports" / p).read_bytes() for p in before} == before   # nothing destroyed
    assert not list((workdir / "reports").glob(".analyze-*"))


def test_a_baseline_ahead_is_a_fine_tune_that_lost_not_an_easy_test_split():
    """Under the margin limit but ahead: measure on harder examples. Behind (Debian 1k: frozen embeddings
    10 points over a fine-tune that ran to its bound): more epochs first, else the baseline or more data."""
    def margin_rule(points: float, meta: dict) -> improvements.Suggestion:
        evaluation = {"best_baseline": "frozen_embeddings", "margin_over_best_baseline": {"macro_f1": points}}
        found = [s for s in improvements.suggest(fake_analysis(0.5), evaluation, {}, LIMITS, 0.999,
                                                 {"best_val_macro_f1": 0.52} | meta) if "baseline" in s.finding]
        assert len(found) == 1
        return found[0]

    close = margin_rule(0.4, {"max_epochs": 10, "epochs_run": 10})
    assert close.switch == "analyze.challenge.path=data/challenge/challenge.csv" and "too easy" in close.action
    assert "+0.40 macro-F1 points" in close.finding
    to_bound = margin_rule(-10.42, {"max_epochs": 10, "epochs_run": 10.0, "stop_reason": "early_stopping"})
    assert to_bound.switch == "train.max_epochs=20" and "too easy" not in to_bound.action
    assert "scores 10.42 macro-F1 points above the fine-tune" in to_bound.finding
    assert "its epoch bound (10 epochs)" in to_bound.action and "0.5200" in to_bound.effect
    assert to_bound.priority == pytest.approx(10.42)
    assert to_bound.command == "dvc exp run -S conf/train.yaml:train.max_epochs=20"
    converged = margin_rule(-3.0, {"max_epochs": 10, "epochs_run": 4.5, "stop_reason": "early_stopping"})
    assert converged.switch == "data.source=<more labelled rows per class>"
    assert "(4.5 of at most 10 epochs: early_stopping)" in converged.action and "Ship the baseline" in converged.action
    unknown_bound = margin_rule(-3.0, {})   # a model saved without its bound: no claim about it
    assert unknown_bound.action.startswith("Training ended and still lost")
