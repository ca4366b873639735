"""The plan's clock (train/timing.py): steps timed on the batches an epoch of the real split is cut
into, and a validation pass over the rows the loop scores."""
from __future__ import annotations

import itertools
import statistics

import numpy as np
import pytest

from hfclf.infra import compute
from hfclf.train import batching, loop, modeling, timing

LABELS = ["ACCOUNT", "ORDER", "REFUND"]


def test_strata_spread_over_the_sorted_sizes():
    sizes = [50, 10, 40, 20, 30, 60, 70, 80]
    assert [sizes[i] for i in timing.strata(sizes, 4)] == [20, 40, 60, 80]
    assert sorted(sizes[i] for i in timing.strata(sizes, 8)) == sorted(sizes)    # as many as there are: all
    assert len(timing.strata(sizes, 20)) == 8 and len(timing.strata(sizes, 0)) == 1


def test_the_timed_batches_have_the_epochs_shape(tiny_model_dir, tickets, monkeypatch):
    # texts of very different lengths: a tiny subset would pad them together, an epoch does not
    texts = [" ".join(["word"] * (1 + i % 40)) + f" {t}" for i, t in enumerate(tickets["instruction"])]
    y = tickets["category"].map({l: i for i, l in enumerate(LABELS)}).to_numpy()
    tokenizer, model, _ = modeling.load_for_training(str(tiny_model_dir), LABELS, seed=0)
    settings = loop.TrainSettings(batch_size=8, seed=0, freeze_embeddings=False)
    shapes = []
    real_step = loop.train_step
    monkeypatch.setattr(loop, "train_step", lambda *a, **k: (shapes.append(tuple(a[4].shape)), real_step(*a, **k))[1])
    timed = timing.training_step_seconds(model, tokenizer, texts, y, settings, compute.select("cpu", "fp32", 1),
                                         steps=6)
    assert timed["steps_timed"] == 6 and len(shapes) == 7 and timed["step_seconds"] > 0    # + 1 warm-up step
    assert timed["steps_per_epoch"] == 12                                               # 90 rows, batch 8
    # the epoch's own batches (length-grouped as loop.train cuts them), long and short alike
    encoded = batching.tokenize(tokenizer, texts, 128)
    epoch = batching.training_batches([len(e) for e in encoded], 8, np.random.default_rng(0))
    widths = {max(len(encoded[i]) for i in b) for b in epoch}
    assert {w for _, w in shapes} <= widths and min(w for _, w in shapes[1:]) < max(w for _, w in shapes[1:])
    assert timed["padded_tokens_per_step"] == pytest.approx(timed["epoch_padded_tokens_per_step"], rel=0.25)


def test_a_validation_pass_is_timed_on_the_rows_the_loop_scores(tiny_model_dir, tickets):
    tokenizer, model, _ = modeling.load_for_training(str(tiny_model_dir), LABELS, seed=0)
    hw = compute.select("cpu", "fp32", 1)
    texts = tickets["instruction"].tolist()
    every = timing.validation_pass_seconds(model, tokenizer, texts, loop.TrainSettings(), hw)
    assert every["rows"] == every["rows_timed"] == 90 and every["pass_seconds"] > 0
    sampled = timing.validation_pass_seconds(model, tokenizer, texts, loop.TrainSettings(eval_max_rows=50), hw,
                                             max_rows=20)
    assert sampled["rows"] == 50 and sampled["rows_timed"] == 20      # scaled from 20 timed rows to the 50 scored


def test_rounds_run_until_the_floor_is_timed_within_the_cap():
    assert timing.timed_rounds(lambda: 2.0) == [2.0]                                    # once by default
    assert timing.timed_rounds(lambda: 2.0, min_seconds=5.0, max_rounds=5) == [2.0] * 3  # 6 s >= 5 s
    assert timing.timed_rounds(lambda: 0.1, min_seconds=8.0, max_rounds=5) == [0.1] * 5  # the cap
    assert timing.timed_rounds(lambda: 9.0, min_seconds=8.0, max_rounds=5) == [9.0]     # a long clock: one round
    spans = itertools.cycle([2.0, 6.0, 2.2])       # a slow spell in the second round ...
    rounds = timing.timed_rounds(lambda: next(spans), min_seconds=10.0, max_rounds=5)
    assert rounds == [2.0, 6.0, 2.2] and statistics.median(rounds) == 2.2   # ... does not move the median


def test_the_training_clock_takes_the_median_of_its_rounds(tiny_model_dir, tickets, monkeypatch):
    tokenizer, model, _ = modeling.load_for_training(str(tiny_model_dir), LABELS, seed=0)
    hw = compute.select("cpu", "fp32", 1)
    texts = tickets["instruction"].tolist()
    y = tickets["category"].map({l: i for i, l in enumerate(LABELS)}).to_numpy()
    calls = []
    real_step = loop.train_step
    monkeypatch.setattr(loop, "train_step", lambda *a, **k: (calls.append(1), real_step(*a, **k))[1])
    steps = timing.training_step_seconds(model, tokenizer, texts, y, loop.TrainSettings(batch_size=8, seed=0), hw,
                                         steps=4, min_seconds=1e9, max_rounds=3)
    assert len(calls) == 1 + 3 * 4 and steps["steps_timed"] == 4 and len(steps["rounds"]) == 3   # warm-up + 3 rounds
    assert steps["step_seconds"] == pytest.approx(statistics.median(steps["rounds"]), abs=1e-4)
    assert steps["seconds_timed"] == pytest.approx(4 * sum(steps["rounds"]), abs=0.01)
