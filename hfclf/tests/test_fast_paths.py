"""Correctness of the fast paths that make training and prediction quick on a CPU (bench/ in the
template measures their speed): length-sorted batches, bf16 autocast where the CPU runs it
natively and the fp32 path where it does not, seeded determinism, and the skipped copy of the
best weights when the best epoch is the last one. A tiny in-process model; no timing asserted."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hfclf.infra import compute
from hfclf.train import batching, bert, modeling, loop

LABELS = ["ACCOUNT", "ORDER", "REFUND"]
ENGINES = ["hfclf", "transformers"]   # train/bert.py's BERT, or transformers' (any other architecture)


def classifier(tiny_model_dir, engine: str):
    """The tiny model with a seeded head for LABELS, as load_for_training gives it (train/bert.py), or
    as transformers builds it for a model train/bert.py does not cover: the same parameters."""
    if engine == "hfclf":
        tokenizer, model, _ = modeling.load_for_training(str(tiny_model_dir), LABELS, seed=0)
        assert isinstance(model, bert.BertClassifier)
        return tokenizer, model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_model_dir), num_labels=len(LABELS),
                                                               id2label=dict(enumerate(LABELS)))
    assert model.config._attn_implementation == "sdpa"
    return AutoTokenizer.from_pretrained(str(tiny_model_dir)), model


def plain_forward(model, tokenizer, texts, temperature: float = 1.0) -> np.ndarray:
    """Probabilities from one padded fp32 forward pass over every text."""
    with torch.inference_mode():
        ids, mask = batching.pad(batching.tokenize(tokenizer, texts, 128), tokenizer.pad_token_id)
        return torch.softmax(model(input_ids=ids, attention_mask=mask).logits / temperature, -1).numpy()


class AttentionSeen:
    """Per forward pass of `model`: its input shape, torch's thread count and the attention it ran
    (sdpa: it called PyTorch's fused kernel; eager: matmul, softmax, matmul)."""

    def __init__(self, model, monkeypatch) -> None:
        self.passes, self.sdpa_calls = [], 0
        fused = torch.nn.functional.scaled_dot_product_attention

        def counting(*args, **kwargs):
            self.sdpa_calls += 1
            return fused(*args, **kwargs)
        monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", counting)
        self.handles = [model.register_forward_pre_hook(self._before, with_kwargs=True),
                        model.register_forward_hook(self._after, with_kwargs=True)]

    def _before(self, module, args, kwargs):
        self.sdpa_calls, self.shape = 0, tuple(kwargs["input_ids"].shape)
        self.threads = torch.get_num_threads()

    def _after(self, module, args, kwargs, output):
        self.passes.append((self.shape, self.threads, "sdpa" if self.sdpa_calls else "eager"))

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def fit(tiny_model_dir, tickets, hw: compute.Compute, **overrides):
    tokenizer, model, _ = modeling.load_for_training(str(tiny_model_dir), LABELS, seed=0)
    y = tickets["category"].map({l: i for i, l in enumerate(LABELS)}).to_numpy()
    settings = loop.TrainSettings(**{"epochs": 4, "batch_size": 8, "learning_rate": 1e-2,
                                         "freeze_embeddings": False, "early_stopping_patience": 4,
                                         "seed": 0, **overrides})
    texts = tickets["instruction"].tolist()
    result = loop.train(model, tokenizer, texts, y, texts, y, settings, hw)
    return model, tokenizer, result


def confident(probs: np.ndarray, margin: float) -> np.ndarray:
    """Rows whose top two probabilities are at least `margin` apart (a label that rounding cannot flip)."""
    top2 = np.sort(probs, axis=1)[:, -2:]
    return (top2[:, 1] - top2[:, 0]) >= margin


def test_bf16_batched_prediction_gives_the_labels_of_one_by_one_and_of_fp32(tiny_model_dir, tickets):
    # warmup of 4 steps (a share of the first epoch's 12): the confident model this comparison needs
    model, tokenizer, _ = fit(tiny_model_dir, tickets, compute.select("cpu", "fp32", 1), warmup_ratio=0.34)
    texts = tickets["instruction"].tolist()
    fp32 = modeling.Predictor(model, tokenizer, 128, compute.select("cpu", "fp32", 1)).predict_proba(texts)
    fast = modeling.Predictor(model, tokenizer, 128, compute.select("cpu", "bf16", 1))
    batched = fast.predict_proba(texts, batch_size=16)
    single = np.vstack([fast.predict_proba([t], batch_size=1) for t in texts])
    sure = confident(fp32, 0.05)
    assert sure.mean() > 0.8                                   # the comparison covers most texts
    assert (batched.argmax(1) == single.argmax(1))[sure].all()
    assert (batched.argmax(1) == fp32.argmax(1))[sure].all()
    np.testing.assert_allclose(batched, fp32, atol=0.05)       # bf16 rounding, not a different model


def test_same_seed_same_model_under_bf16_autocast(tiny_model_dir, tickets):
    hw = compute.select("cpu", "bf16", 1)
    first = fit(tiny_model_dir, tickets, hw, epochs=1)[0]
    second = fit(tiny_model_dir, tickets, hw, epochs=1)[0]
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name


def test_a_cpu_without_native_bf16_trains_and_predicts_in_fp32(tiny_model_dir, tickets, monkeypatch):
    monkeypatch.setattr(compute, "cpu_has_native_bf16", lambda: False)
    hw = compute.select("cpu", "auto", 1)
    assert hw.precision == "fp32" and hw.autocast_dtype is None
    model, tokenizer, result = fit(tiny_model_dir, tickets, hw)
    assert result.best_val_score > 0.5
    texts = tickets["instruction"].tolist()[:16]
    probs = modeling.Predictor(model, tokenizer, 128, hw).predict_proba(texts)
    np.testing.assert_allclose(probs, plain_forward(model, tokenizer, texts), atol=1e-5)   # exactly a plain fp32 pass


def test_the_cpu_with_native_bf16_uses_it(monkeypatch):
    monkeypatch.setattr(compute, "cpu_has_native_bf16", lambda: True)
    assert compute.select("cpu", "auto", 1).autocast_dtype is torch.bfloat16


@pytest.mark.parametrize("epochs, patience", [(1, 1), (3, 3)])
def test_model_ends_with_the_weights_of_its_best_epoch(tiny_model_dir, tickets, epochs, patience):
    """The copy of the best weights is skipped when the best epoch is the last: same outcome."""
    hw = compute.select("cpu", "fp32", 1)
    model, tokenizer, result = fit(tiny_model_dir, tickets, hw, epochs=epochs, early_stopping_patience=patience)
    texts = tickets["instruction"].tolist()
    y = tickets["category"].map({l: i for i, l in enumerate(LABELS)}).to_numpy()
    pred = modeling.Predictor(model, tokenizer, 128, hw).predict_proba(texts).argmax(1)
    from hfclf.evaluate.metrics import macro_f1

    assert macro_f1(y, pred, len(LABELS)) == pytest.approx(result.best_val_score)
    assert result.best_epoch == 1 + int(np.argmax([h["val_macro_f1"] for h in result.history]))


def python_without_openmp_settings(code: str, preset: dict | None = None) -> str:
    """stdout of `python -c code` in this environment without OpenMP wait settings (hfclf's mark
    included), plus `preset`: a fresh process decides, or keeps what `preset` sets."""
    import os
    import subprocess
    import sys

    from hfclf.infra import openmp

    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", openmp.MARK)}
    return subprocess.run([sys.executable, "-c", code], env=env | (preset or {}), capture_output=True, text=True,
                          check=True).stdout


@pytest.mark.parametrize("preset", [{}, {"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "0"},
                                    {"HFCLF_OPENMP_WAIT": "passive: inherited", "OMP_WAIT_POLICY": "PASSIVE"}])
def test_openmp_wait_is_decided_before_torch_loads_and_what_the_user_set_wins(preset):
    """The package decides before torch loads (infra/openmp.py): passive, plus a brief spin where the
    CPU is idle now; a policy the user set is kept; one this package set in a parent is decided afresh."""
    import json

    from hfclf.infra import openmp

    keys = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", openmp.MARK)
    code = ("import json, os, hfclf, torch; torch.set_num_threads(2); x = torch.ones(64, 64); "
            "assert float((x @ x).sum()) == 64 ** 3; "
            f"print(json.dumps([hfclf.OPENMP_WAIT] + [os.environ.get(k) for k in {keys!r}]))")
    decision, policy, spin, mark = json.loads(python_without_openmp_settings(code, preset))
    if preset and openmp.MARK not in preset:
        assert decision.startswith("as set") and mark is None
        assert (policy, spin) == (preset.get("OMP_WAIT_POLICY"), preset.get("GOMP_SPINCOUNT"))
    else:   # decided here, by this machine's CPU pressure now
        assert policy == "PASSIVE" and mark == decision
        assert spin == (str(openmp.BRIEF_SPIN) if decision.startswith("brief spin") else None)
        assert decision.startswith(("brief spin", "passive"))


def test_openmp_spins_briefly_only_where_the_cpu_is_idle(tmp_path):
    from hfclf.infra import openmp

    pressure = tmp_path / "cpu"
    pressure.write_text("some avg10=0.97 avg60=14.44 avg300=33.12 total=982375211\n"
                        "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
    assert openmp.cpu_pressure(pressure) == pytest.approx(0.97)
    assert openmp.cpu_pressure(tmp_path / "missing") is None
    pressure.write_text("garbled\n")
    assert openmp.cpu_pressure(pressure) is None

    idle, busy, unknown = {}, {"GOMP_SPINCOUNT": "1000", openmp.MARK: "brief spin: a parent's"}, {}
    assert openmp.choose(idle, 0.97).startswith("brief spin")
    assert idle["OMP_WAIT_POLICY"] == "PASSIVE" and idle["GOMP_SPINCOUNT"] == str(openmp.BRIEF_SPIN)
    # a parent's brief spin is not inherited by a process that starts on a busy CPU
    assert openmp.choose(busy, 22.2) == "passive: the CPU is busy (pressure 22.2% of the last 10 s)"
    assert "GOMP_SPINCOUNT" not in busy and busy["OMP_WAIT_POLICY"] == "PASSIVE"
    assert openmp.choose(unknown, None) == "passive: CPU pressure unknown"
    assert [openmp.summary(d) for d in (idle[openmp.MARK], unknown[openmp.MARK])] == \
        [f"brief spin (GOMP_SPINCOUNT={openmp.BRIEF_SPIN})", "passive"]
    assert "GOMP_SPINCOUNT" not in unknown
    users = {"GOMP_SPINCOUNT": "300000"}
    assert openmp.choose(users, 0.0) == "as set: OMP_WAIT_POLICY=(unset), GOMP_SPINCOUNT=300000"
    assert users == {"GOMP_SPINCOUNT": "300000"}
    # whether a waiting thread sleeps at once, which sets when a forward pass is worth a second thread
    assert [openmp.threads_sleep(env) for env in (idle, busy, unknown, users, {}, {"OMP_WAIT_POLICY": "passive"},
                                                  {"GOMP_SPINCOUNT": "0"}, {"OMP_WAIT_POLICY": "ACTIVE"})] \
        == [False, True, True, False, False, True, True, False]


def test_a_forward_pass_takes_more_threads_sooner_where_they_spin_and_in_fp32():
    """Two threads from 2 x tokens_per_thread tokens: sooner where waking a thread is cheap (it spins
    first) and where a token is more work (fp32); any precision but bf16 does fp32's work."""
    from hfclf.train.modeling import tokens_per_thread

    assert tokens_per_thread("bf16", True) > tokens_per_thread("fp32", True) > tokens_per_thread("fp32", False)
    assert tokens_per_thread("bf16", True) > tokens_per_thread("bf16", False) > tokens_per_thread("fp32", False)
    assert tokens_per_thread("fp16", False) == tokens_per_thread("fp32", False)


def test_openmp_wait_is_left_alone_where_torch_loaded_first():
    """Its OpenMP runtime has read the environment by then: the log says so instead of claiming a decision."""
    code = "import os, torch, hfclf; print(hfclf.OPENMP_WAIT); print(os.environ.get('GOMP_SPINCOUNT'))"
    decision, spin = python_without_openmp_settings(code).strip().splitlines()
    assert decision.startswith("unchanged: torch was imported before hfclf") and spin == "None"


@pytest.mark.parametrize("batch_size", [1, 3, 8, 256])
def test_prediction_batches_cover_every_text_once_in_length_order_and_pad_within_budget(batch_size):
    from hfclf.train import batching

    lengths = np.random.default_rng(0).integers(3, 40, size=200).tolist() + [128] * 2 + [7] * 50
    batches = batching.length_batches(lengths, batch_size)
    order = np.concatenate(batches)
    assert sorted(order.tolist()) == list(range(len(lengths)))
    assert np.all(np.diff(np.asarray(lengths)[order]) >= 0)                 # length order
    for index in batches:
        rows = np.asarray(lengths)[index]
        assert 1 <= len(index) <= batch_size
        assert rows.max() * len(rows) - rows.sum() <= batching.PAD_BUDGET  # next to no padding
    assert batching.length_batches([], 8) == []
    assert [b.tolist() for b in batching.length_batches([5, 5, 5, 9, 9], 8, pad_budget=0)] == [[0, 1, 2], [3, 4]]
    # a few longer texts join the batch before them rather than take a forward pass of their own
    assert [b.tolist() for b in batching.length_batches([5, 5, 6], 8, pad_budget=2)] == [[0, 1, 2]]


@pytest.mark.parametrize("engine", ENGINES)
def test_prediction_matches_one_by_one_and_gives_small_batches_fewer_threads(tiny_model_dir, tickets, engine,
                                                                             monkeypatch):
    """Length batches without padding give the probabilities of a plain padded forward pass and of
    one text at a time; a forward pass gets a thread per `tokens_per_thread` tokens (fp32: two from
    8 or 32 tokens, by how OpenMP's threads wait) and a batch of many short texts eager attention
    (the model switched to it and back, train/bert.py's as transformers');
    the caller's threads and the model's attention are left as they were."""
    tokenizer, model = classifier(tiny_model_dir, engine)
    predictor = modeling.Predictor(model, tokenizer, 128, compute.select("cpu", "fp32", 2), temperature=1.3)
    seen = AttentionSeen(model, monkeypatch)
    texts = tickets["instruction"].tolist()
    try:
        batched = predictor.predict_proba(texts, batch_size=64)
        for (rows, width), threads, attention in seen.passes:
            assert threads == min(2, max(1, rows * width // predictor.tokens_per_thread))
            short = rows >= modeling.EAGER_MIN_ROWS and width <= modeling.EAGER_MAX_WIDTH
            assert attention == ("eager" if short else "sdpa")
        assert "eager" in {attention for *_, attention in seen.passes}
        threads_seen = {threads for _, threads, _ in seen.passes}
        seen.passes.clear()
        single = np.vstack([predictor.predict_proba([t]) for t in texts])
        predictor.predict_proba(["refund"])   # 3 tokens: one thread under every rule
        assert {attention for *_, attention in seen.passes} == {"sdpa"}
        assert all(threads == min(2, max(1, width // predictor.tokens_per_thread))
                   for (_, width), threads, _ in seen.passes)
        assert threads_seen | {threads for _, threads, _ in seen.passes} == {1, 2}   # both kinds of pass were seen
        assert torch.get_num_threads() == 2 and model.config._attn_implementation == "sdpa"
    finally:
        seen.remove()
    plain = plain_forward(model, tokenizer, texts, temperature=1.3)
    np.testing.assert_allclose(batched, plain, atol=1e-5)
    np.testing.assert_allclose(single, plain, atol=1e-5)
    assert [p.label for p in predictor.predict(texts[:5])] == [LABELS[i] for i in plain[:5].argmax(1)]


@pytest.mark.parametrize("engine", ENGINES)
def test_threads_predicting_at_once_get_the_probabilities_of_one_at_a_time(tiny_model_dir, tickets, engine):
    """The demo's server calls one Predictor from several threads: a batch's lowered thread count or
    switched attention must never leak into another's forward pass, nor outlive it."""
    from concurrent.futures import ThreadPoolExecutor

    tokenizer, model = classifier(tiny_model_dir, engine)
    predictor = modeling.Predictor(model, tokenizer, 128, compute.select("cpu", "fp32", 2))
    texts = tickets["instruction"].tolist()
    alone = {"batch": predictor.predict_proba(texts, batch_size=64),
             "single": np.vstack([predictor.predict_proba([t]) for t in texts[:20]])}
    jobs = [("batch", lambda: predictor.predict_proba(texts, batch_size=64)),
            ("single", lambda: np.vstack([predictor.predict_proba([t]) for t in texts[:20]]))] * 4
    seen = []
    handle = model.register_forward_pre_hook(lambda module, args, kwargs: seen.append(
        (tuple(kwargs["input_ids"].shape), module.config._attn_implementation)), with_kwargs=True)
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = [(kind, pool.submit(call)) for kind, call in jobs]
            for kind, future in futures:
                np.testing.assert_allclose(future.result(), alone[kind], atol=1e-5)
    finally:
        handle.remove()
    for (rows, width), attention in seen:   # each pass ran with the attention switched for its own batch
        short = rows >= modeling.EAGER_MIN_ROWS and width <= modeling.EAGER_MAX_WIDTH
        assert attention == ("eager" if short else "sdpa"), (rows, width, attention)
    assert torch.get_num_threads() == 2 and model.config._attn_implementation == "sdpa"
