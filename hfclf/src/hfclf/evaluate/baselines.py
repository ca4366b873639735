"""Cheap baselines, trained on the train split and scored on the same test split as the fine-tune.

A fine-tune's 99% means little until it is compared with what a minute of scikit-learn gets:
- `majority`: always the most frequent training label (the floor),
- `tfidf_logreg`: word 1-2-gram TF-IDF + logistic regression (the classic strong baseline),
- `frozen_embeddings`: mean-pooled embeddings of the *base* model, not fine-tuned, + logistic
  regression (what fine-tuning adds over using the encoder as a fixed feature extractor).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from hfclf.train import batching
from hfclf.infra.compute import Compute
from hfclf.infra.errors import UserError

log = logging.getLogger(__name__)

DESCRIPTIONS = {
    "majority": "always the most frequent training label",
    "tfidf_logreg": "TF-IDF (word 1-2-grams) + logistic regression",
    "frozen_embeddings": "base-model embeddings (mean pooling, not fine-tuned) + logistic regression",
}


@dataclass
class BaselineResult:
    name: str
    description: str
    y_pred: np.ndarray
    train_rows: int
    seconds: float


def majority(train_y: np.ndarray, n_test: int) -> np.ndarray:
    return np.full(n_test, np.bincount(train_y).argmax(), dtype=np.int64)


def _fit_predict(features, y: np.ndarray, test_features, c: float, seed: int) -> np.ndarray:
    """Multinomial logistic regression. One BLAS thread: these problems are small, and threaded
    BLAS made them 10-60x slower on a busy 2-core machine (measured)."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(features, y).predict(test_features)


def tfidf_logreg(train_texts: Sequence[str], train_y: np.ndarray, test_texts: Sequence[str], c: float,
                 seed: int) -> np.ndarray:
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1, lowercase=True)
    features = vectorizer.fit_transform(train_texts)
    return _fit_predict(features, train_y, vectorizer.transform(test_texts), c, seed)


@torch.inference_mode()
def embed(model, tokenizer, texts: Sequence[str], hw: Compute, max_length: int, batch_size: int) -> np.ndarray:
    """Mean-pooled last hidden states (padding excluded), L2-normalised; batched in length order."""
    encoded = batching.tokenize(tokenizer, texts, max_length)
    pad_id = tokenizer.pad_token_id or 0
    out = None
    model.eval().to(hw.device)
    for index in batching.inference_batches([len(e) for e in encoded], batch_size):
        ids, mask = batching.pad([encoded[i] for i in index], pad_id)
        ids, mask = ids.to(hw.device), mask.to(hw.device)
        with hw.autocast():
            hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
        weights = mask.unsqueeze(-1).float()
        pooled = (hidden.float() * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        pooled = torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy()
        if out is None:
            out = np.zeros((len(encoded), pooled.shape[1]), dtype=np.float32)
        out[index] = pooled
    return out


def base_model_features(model_name: str, texts: Sequence[str], hw: Compute, max_length: int,
                        batch_size: int) -> np.ndarray:
    """`embed` with the named base model (resolved like training resolves it: local, Hub, packaged)."""
    from hfclf.train import bert_tokenizer
    from hfclf.train.modeling import load_encoder, resolve_model

    folder, origin = resolve_model(model_name)
    log.info("frozen-embedding baseline: %s from %s", model_name, origin)
    tokenizer, encoder = bert_tokenizer.load(folder), load_encoder(folder)
    return embed(encoder, tokenizer, texts, hw, max_length, batch_size)


def frozen_embeddings(model_name: str, train_texts: Sequence[str], train_y: np.ndarray,
                      test_texts: Sequence[str], hw: Compute, max_length: int, batch_size: int, c: float,
                      seed: int) -> np.ndarray:
    features = base_model_features(model_name, list(train_texts) + list(test_texts), hw, max_length, batch_size)
    return _fit_predict(features[: len(train_texts)], train_y, features[len(train_texts):], c, seed)


def subsample(n: int, y: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """Row indices: all rows, or a stratified sample of `limit` rows (keeps training time bounded)."""
    if not limit or n <= limit:
        return np.arange(n)
    from sklearn.model_selection import train_test_split

    strat = y if np.bincount(y).min() >= 2 else None
    keep, _ = train_test_split(np.arange(n), train_size=limit, random_state=seed, stratify=strat)
    return np.sort(keep)


def run(names: Sequence[str], train_texts: Sequence[str], train_y: np.ndarray, test_texts: Sequence[str],
        settings, model_name: str, hw: Compute, max_length: int, seed: int) -> list[BaselineResult]:
    """Train and score each named baseline; `settings` is conf/evaluate.yaml's `baselines` section."""
    train_y = np.asarray(train_y, dtype=np.int64)

    def predict(name: str, texts: list[str], y: np.ndarray):
        if name == "majority":
            return majority(y, len(test_texts))
        if name == "tfidf_logreg":
            return tfidf_logreg(texts, y, test_texts, settings.logreg_c, seed)
        return frozen_embeddings(model_name, texts, y, test_texts, hw, max_length, settings.batch_size,
                                 settings.logreg_c, seed)

    rows = subsample(len(train_texts), train_y, settings.max_train_rows, seed)
    return score_each(names, DESCRIPTIONS, [train_texts[i] for i in rows], train_y[rows], predict)


def score_each(names: Sequence[str], descriptions: dict[str, str], texts: list[str], y: np.ndarray,
               predict: Callable[[str, list[str], np.ndarray], np.ndarray]) -> list[BaselineResult]:
    """Each named baseline (a key of `descriptions`) trained on `texts`/`y` by `predict(name, texts, y)`,
    which returns its test predictions; timed and logged. Shared with evaluate/multilabel_baselines.py."""
    unknown = [n for n in names if n not in descriptions]
    if unknown:
        raise UserError(f"evaluate.baselines.run has unknown baseline(s) {unknown}; "
                        f"choose from {sorted(descriptions)}.")
    results = []
    for name in names:
        started = time.monotonic()
        pred = np.asarray(predict(name, texts, y), dtype=y.dtype)
        seconds = round(time.monotonic() - started, 2)
        results.append(BaselineResult(name, descriptions[name], pred, len(texts), seconds))
        log.info("baseline %s trained on %d rows and scored in %.1f s", name, len(texts), results[-1].seconds)
    return results


def compare(y_true: np.ndarray, model_pred: np.ndarray, results: list[BaselineResult], n_classes: int,
            resamples) -> dict:
    """The fine-tune and every baseline with bootstrap intervals, and the fine-tune's paired margin
    over the best baseline (by macro-F1) in points, for accuracy and macro-F1."""
    from hfclf.evaluate import bootstrap

    models = {"fine-tuned": bootstrap.summarize(y_true, model_pred, n_classes, resamples)}
    for result in results:
        models[result.name] = bootstrap.summarize(y_true, result.y_pred, n_classes, resamples) | {
            "train_rows": result.train_rows, "seconds": result.seconds}
    comparison = {"models": models, "best_baseline": None, "margin": {}}
    if results:
        best = max(results, key=lambda r: (models[r.name]["macro_f1"], models[r.name]["accuracy"]))
        comparison["best_baseline"] = best.name
        for metric in ("accuracy", "macro_f1"):
            diff = bootstrap.paired_difference(y_true, model_pred, best.y_pred, n_classes, resamples, metric)
            comparison["margin"][metric] = {k: v * 100 if k != "a_better_share" else v for k, v in diff.items()}
    return comparison


METRIC_NAMES = {"accuracy": "accuracy", "macro_f1": "macro-F1", "micro_f1": "micro-F1"}


def verdict(comparison: dict, metric: str = "macro_f1", also: str = "accuracy") -> str:
    """One sentence: the fine-tune's margin over the best baseline in `metric` (and `also`), and
    whether it is real. Multi-label passes micro-F1 and macro-F1 (evaluate/multilabel_baselines.py)."""
    best = comparison["best_baseline"]
    if best is None:
        return "No baselines were run (evaluate.baselines.run is empty)."
    m = comparison["margin"][metric]
    text = (f"The fine-tune's margin over the best baseline (`{best}`) is **{m['difference']:+.2f} "
            f"{METRIC_NAMES[metric]} points** (95% paired bootstrap interval {m['ci_low']:+.2f} to {m['ci_high']:+.2f}; "
            f"{METRIC_NAMES[also]} {comparison['margin'][also]['difference']:+.2f} points).")
    if m["ci_low"] > 0:
        return text + " The fine-tune is better beyond sampling noise."
    if m["ci_high"] < 0:
        return text + " **The baseline is better**: the fine-tune does not earn its cost on this test split."
    return text + (" The interval includes zero: on this test split the fine-tune is **not distinguishable** "
                   "from the baseline; its value must come from elsewhere (robustness, out-of-scope "
                   "behaviour: see failure_analysis.md).")


def markdown(comparison: dict) -> str:
    from hfclf.infra.render import md_table

    rows = []
    for name, s in comparison["models"].items():
        rows.append((f"**{name}**" if name == "fine-tuned" else name, DESCRIPTIONS.get(name, "this model"),
                     f"{s['accuracy']:.4f} [{s['accuracy_ci_low']:.4f}, {s['accuracy_ci_high']:.4f}]",
                     f"{s['macro_f1']:.4f} [{s['macro_f1_ci_low']:.4f}, {s['macro_f1_ci_high']:.4f}]",
                     s.get("train_rows", "")))
    return "\n".join([
        "## Fine-tune against baselines", "",
        "Every model is trained on the train split and scored on the same test rows; brackets are 95% "
        "bootstrap intervals.", "",
        md_table(["model", "what", "accuracy [95% CI]", "macro-F1 [95% CI]", "train rows"], rows), "",
        verdict(comparison), ""])
