"""Cheap multi-label baselines, trained on the train split and scored on the same test rows as the
fine-tune (the multi-label side of baselines.py, under the same names so evaluate.baselines.run
works for both tasks):
- `majority`: the labels carried by more than half of the training rows, else the single most
  frequent label, for every text (the floor),
- `tfidf_logreg`: word 1-2-gram TF-IDF + one logistic regression per label (one-vs-rest),
- `frozen_embeddings`: the base model's mean-pooled embeddings + one logistic regression per label.
"""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from hfclf.evaluate import baselines, multilabel
from hfclf.evaluate.baselines import BaselineResult, base_model_features
from hfclf.infra.compute import Compute

log = logging.getLogger(__name__)

DESCRIPTIONS = {
    "majority": "the labels on more than half of the training rows (else the most frequent one)",
    "tfidf_logreg": "TF-IDF (word 1-2-grams) + one-vs-rest logistic regression",
    "frozen_embeddings": "base-model embeddings (mean pooling, not fine-tuned) + one-vs-rest logistic regression",
}
MARGIN_METRICS = ("micro_f1", "macro_f1")


def most_frequent_labels(train_y: np.ndarray, n_test: int) -> np.ndarray:
    """Every test row gets the labels present in more than half of the training rows; when no label
    is that common, the single most frequent one (so the baseline never predicts nothing)."""
    share = np.asarray(train_y, dtype=float).mean(0)
    chosen = share > 0.5
    if not chosen.any():
        chosen[int(np.argmax(share))] = True
    return np.tile(chosen.astype(np.int8), (n_test, 1))


def one_vs_rest(features, train_y: np.ndarray, test_features, c: float, seed: int) -> np.ndarray:
    """One logistic regression per label, predicting at probability 0.5. A label with a single class
    in train (never or always present) is predicted as that constant instead of fitting a model.
    One BLAS thread, as in baselines._fit_predict (small problems, busy machines)."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    train_y = np.asarray(train_y, dtype=np.int8)
    out = np.zeros((test_features.shape[0], train_y.shape[1]), dtype=np.int8)
    constant = train_y.min(0) == train_y.max(0)
    out[:, constant] = train_y[0, constant]
    with threadpool_limits(1):
        for j in np.flatnonzero(~constant):
            model = LogisticRegression(C=c, max_iter=2000, random_state=seed)
            out[:, j] = model.fit(features, train_y[:, j]).predict(test_features)
    if constant.any():
        log.info("%d label(s) have a single class in the baseline's training rows: predicted as constants",
                 int(constant.sum()))
    return out


def tfidf_logreg(train_texts: Sequence[str], train_y: np.ndarray, test_texts: Sequence[str], c: float,
                 seed: int) -> np.ndarray:
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1, lowercase=True)
    features = vectorizer.fit_transform(train_texts)
    return one_vs_rest(features, train_y, vectorizer.transform(test_texts), c, seed)


def frozen_embeddings(model_name: str, train_texts: Sequence[str], train_y: np.ndarray,
                      test_texts: Sequence[str], hw: Compute, max_length: int, batch_size: int, c: float,
                      seed: int) -> np.ndarray:
    features = base_model_features(model_name, list(train_texts) + list(test_texts), hw, max_length, batch_size)
    return one_vs_rest(features[: len(train_texts)], train_y, features[len(train_texts):], c, seed)


def subsample(n: int, limit: int | None, seed: int) -> np.ndarray:
    """Row indices: all rows, or a seeded random `limit` of them (label sets do not stratify)."""
    if not limit or n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def run(names: Sequence[str], train_texts: Sequence[str], train_y: np.ndarray, test_texts: Sequence[str],
        settings, model_name: str, hw: Compute, max_length: int, seed: int) -> list[BaselineResult]:
    """Train and score each named baseline on rows x labels 0/1 targets; `settings` is
    conf/evaluate.yaml's `baselines` section. Each result's y_pred is a test rows x labels matrix."""
    train_y = np.asarray(train_y, dtype=np.int8)

    def predict(name: str, texts: list[str], y: np.ndarray):
        if name == "majority":
            return most_frequent_labels(y, len(test_texts))
        if name == "tfidf_logreg":
            return tfidf_logreg(texts, y, test_texts, settings.logreg_c, seed)
        return frozen_embeddings(model_name, texts, y, test_texts, hw, max_length, settings.batch_size,
                                 settings.logreg_c, seed)

    rows = subsample(len(train_texts), settings.max_train_rows, seed)
    return baselines.score_each(names, DESCRIPTIONS, [train_texts[i] for i in rows], train_y[rows], predict)


def compare(y_true: np.ndarray, model_pred: np.ndarray, results: list[BaselineResult], resamples) -> dict:
    """The fine-tune and every baseline with bootstrap intervals, and the fine-tune's paired margin
    over the best baseline (by micro-F1, then macro-F1) in points, for micro- and macro-F1."""
    models = {"fine-tuned": multilabel.summarize(y_true, model_pred, resamples)}
    for result in results:
        models[result.name] = multilabel.summarize(y_true, result.y_pred, resamples) | {
            "train_rows": result.train_rows, "seconds": result.seconds}
    comparison = {"models": models, "best_baseline": None, "margin": {}}
    if results:
        best = max(results, key=lambda r: (models[r.name]["micro_f1"], models[r.name]["macro_f1"]))
        comparison["best_baseline"] = best.name
        for metric in MARGIN_METRICS:
            diff = multilabel.paired_difference(y_true, model_pred, best.y_pred, resamples, metric)
            comparison["margin"][metric] = {k: v * 100 if k != "a_better_share" else v for k, v in diff.items()}
    return comparison


def verdict(comparison: dict) -> str:
    """One sentence: the fine-tune's micro-F1 margin over the best baseline, and whether it is real."""
    return baselines.verdict(comparison, "micro_f1", "macro_f1")


def markdown(comparison: dict) -> str:
    from hfclf.infra.render import md_table

    def cell(s: dict, metric: str) -> str:
        return f"{s[metric]:.4f} [{s[metric + '_ci_low']:.4f}, {s[metric + '_ci_high']:.4f}]"

    rows = [(f"**{name}**" if name == "fine-tuned" else name, DESCRIPTIONS.get(name, "this model"),
             cell(s, "micro_f1"), cell(s, "macro_f1"), s.get("train_rows", ""))
            for name, s in comparison["models"].items()]
    return "\n".join([
        "## Fine-tune against baselines", "",
        "Every model is trained on the train split and scored on the same test rows; brackets are 95% "
        "bootstrap intervals.", "",
        md_table(["model", "what", "micro-F1 [95% CI]", "macro-F1 [95% CI]", "train rows"], rows), "",
        verdict(comparison), ""])
