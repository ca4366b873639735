"""The pre-training review: what in the prepared data would make a model or its scores misleading.

- leakage: validation/test rows whose text (exactly, or up to case, digits, punctuation and
  spacing - data/splitting.normalise_text) also occurs in an earlier split; severe leakage fails `review`;
- close paraphrases across splits (character n-gram cosine), reported, not failed on;
- the same text with different labels, class imbalance, very short and truncated texts;
- likely personal data (emails, phone, card and order/account numbers), counted and shown masked
  (personal_data.py).

Multi-label splits (labels.json task multi_label: each `label` a canonical label set) are reviewed
per individual label: imbalance compares the labels' support in train, `rare_labels` lists labels
with fewer than review.rare_label_min training rows, and label conflicts are identical texts with
different label sets.

Everything is computed from the splits alone; the stage (review.py) decides what fails. The
report's text (`review_markdown`, `leakage_error`) stays here, next to the findings it words.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from hfclf.data import multilabel
from hfclf.data.dataset import SPLITS, label_variants
from hfclf.data.splitting import normalise_text
from hfclf.infra.render import md_table
from hfclf.preflight.personal_data import personal_data

# (earlier split, later split): a later split's row that repeats a text of the earlier one leaks.
PAIRS = (("train", "validation"), ("train", "test"), ("validation", "test"))


@dataclass
class ReviewSettings:
    max_leakage_fraction: float = 0.01
    allow_leakage: bool = False
    similarity_threshold: float | None = 0.9
    similarity_sample: int = 5000
    similarity_risk_share: float = 0.05
    imbalance_ratio: float = 5.0
    minority_share: float = 0.5
    short_words: int = 2
    length_risk_share: float = 0.01
    examples: int = 5
    fail_on_label_variants: bool = False   # fail when labels differ only by case, spacing or number format
    rare_label_min: int = 10   # multi-label: a label with fewer training rows than this is a risk
    seed: int = 42


# --------------------------------------------------------------------------- leakage

def _exact_key(texts: pd.Series) -> pd.Series:
    return texts.str.strip()


def leakage(splits: dict[str, pd.DataFrame], settings: ReviewSettings) -> dict:
    """Rows of each later split whose text occurs in the earlier split, exactly and near."""
    pairs = []
    for earlier, later in PAIRS:
        seen_exact = set(_exact_key(splits[earlier]["text"]))
        near_earlier = splits[earlier]["text"].map(normalise_text)
        first_text = dict(zip(near_earlier, splits[earlier]["text"]))
        later_text = splits[later]["text"]
        near_later = later_text.map(normalise_text)
        near = near_later.isin(first_text.keys())
        exact = _exact_key(later_text).isin(seen_exact)
        n = max(len(later_text), 1)
        pairs.append({
            "split": later, "against": earlier, "rows": len(later_text),
            "exact_rows": int(exact.sum()), "near_rows": int(near.sum()),
            "fraction": round(float(near.sum()) / n, 4),
            "examples": [[text, first_text[key]] for text, key in
                         zip(later_text[near].head(settings.examples), near_later[near])],
        })
    worst = max(pairs, key=lambda p: p["fraction"])
    within = {}
    for name in SPLITS:
        texts = splits[name]["text"]
        within[name] = {"exact": int(_exact_key(texts).duplicated().sum()),
                        "near": int(texts.map(normalise_text).duplicated().sum())}
    return {"pairs": pairs, "max_fraction": worst["fraction"], "worst": [worst["split"], worst["against"]],
            "threshold": settings.max_leakage_fraction,
            "severe": worst["fraction"] > settings.max_leakage_fraction, "within_split_duplicates": within}


def similarity(splits: dict[str, pd.DataFrame], settings: ReviewSettings) -> dict | None:
    """Share of validation/test rows with a close paraphrase in train (TF-IDF of character 3-5-grams)."""
    if not settings.similarity_threshold:
        return None
    from sklearn.feature_extraction.text import TfidfVectorizer

    train = splits["train"]["text"].map(normalise_text)
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, dtype=np.float32)
    train_matrix = vectorizer.fit_transform(train)
    out = {"threshold": settings.similarity_threshold, "method": "cosine of character 3-5-gram TF-IDF"}
    examples = []
    for name in ("validation", "test"):
        frame = splits[name]
        if len(frame) > settings.similarity_sample:
            frame = frame.sample(settings.similarity_sample, random_state=settings.seed)
        matrix = vectorizer.transform(frame["text"].map(normalise_text))
        best, nearest = np.zeros(len(frame), dtype=np.float32), np.zeros(len(frame), dtype=np.int64)
        chunk = max(1, int(2e7 // max(train_matrix.shape[0], 1)))   # bounds the dense block to ~80 MB
        for start in range(0, len(frame), chunk):
            block = (matrix[start:start + chunk] @ train_matrix.T).toarray()
            best[start:start + chunk] = block.max(1)
            nearest[start:start + chunk] = block.argmax(1)
        close = best >= settings.similarity_threshold
        out[name] = {"rows_checked": len(frame), "close_rows": int(close.sum()),
                     "fraction": round(float(close.mean()) if len(frame) else 0.0, 4)}
        if name == "test":
            order = np.argsort(-best)
            picks = [i for i in order if close[i] and best[i] < 0.999][: settings.examples]
            examples = [[frame["text"].iloc[i], splits["train"]["text"].iloc[nearest[i]], round(float(best[i]), 3)]
                        for i in picks]
    out["examples"] = examples
    return out


# --------------------------------------------------------------------------- labels and lengths

def label_conflicts(splits: dict[str, pd.DataFrame], settings: ReviewSettings, multi: bool = False) -> dict:
    """Texts that are the same up to case, digits, punctuation and spacing but carry different labels
    (multi-label: different label sets, shown as `a + b`)."""
    everything = pd.concat([splits[s][["text", "label"]] for s in SPLITS], ignore_index=True)
    everything["key"] = everything["text"].map(normalise_text)
    labels_per_key = everything.groupby("key")["label"].nunique()
    conflicting = labels_per_key[labels_per_key > 1].index
    rows = everything[everything["key"].isin(conflicting)]
    shown = multilabel.readable if multi else str
    examples = [{"text": group["text"].iloc[0], "labels": {shown(k): int(v) for k, v in
                                                           group["label"].value_counts().items()}}
                for _, group in list(rows.groupby("key"))[: settings.examples]]
    return {"texts": int(len(conflicting)), "rows": int(len(rows)),
            "fraction": round(len(rows) / max(len(everything), 1), 4), "examples": examples}


def train_support(splits: dict[str, pd.DataFrame], multi: bool) -> pd.Series:
    """Training rows per class, most frequent first; multi-label: rows carrying each label of any split."""
    if not multi:
        return splits["train"]["label"].value_counts()
    labels = multilabel.all_labels(pd.concat([splits[name]["label"] for name in SPLITS]))
    support = pd.Series(multilabel.label_support(splits["train"]["label"], labels), dtype=int)
    return support.sort_values(ascending=False, kind="stable")


def imbalance(splits: dict[str, pd.DataFrame], settings: ReviewSettings, multi: bool = False) -> dict:
    """Largest/smallest class in train; multi-label: per label, over the labels train has at all."""
    counts = train_support(splits, multi)
    counts = counts[counts > 0]
    share = counts / counts.sum()
    uniform = 1 / len(counts)
    minority = share[share < settings.minority_share * uniform]
    ratio = float(counts.max() / counts.min())
    return {"train_counts": counts.astype(int).to_dict(), "ratio": round(ratio, 2),
            "majority": str(counts.index[0]), "minority_classes": {k: int(counts[k]) for k in minority.index},
            "minority_share_threshold": round(settings.minority_share * uniform, 4),
            "severe": ratio >= settings.imbalance_ratio}


def rare_labels(splits: dict[str, pd.DataFrame], settings: ReviewSettings) -> dict:
    """Multi-label: labels with fewer than rare_label_min training rows (0: in validation/test only)."""
    counts = train_support(splits, multi=True)
    rare = counts[counts < settings.rare_label_min].sort_values(kind="stable")
    return {"threshold": settings.rare_label_min, "labels": {str(k): int(v) for k, v in rare.items()}}


def lengths(splits: dict[str, pd.DataFrame], settings: ReviewSettings, max_length: int,
            count_tokens: Callable[[list[str]], list[int]] | None) -> dict:
    """Very short texts (fewer than short_words words) and texts longer than model.max_length tokens.

    Only texts whose UTF-8 length could exceed max_length tokens are tokenized (a token covers at
    least one byte), so most datasets need no tokenizer here.
    """
    everything = pd.concat([splits[s]["text"] for s in SPLITS], ignore_index=True)
    short = everything[everything.str.split().str.len() < settings.short_words]
    candidates = everything[everything.map(lambda t: len(t.encode("utf-8"))) + 4 > max_length]
    long_texts = pd.Series([], dtype=str)
    if len(candidates) and count_tokens is not None:
        tokens = np.asarray(count_tokens(candidates.tolist()))
        long_texts = candidates[tokens > max_length]
    n = max(len(everything), 1)
    return {"short": {"words_below": settings.short_words, "rows": int(len(short)),
                      "fraction": round(len(short) / n, 4), "examples": short.head(settings.examples).tolist()},
            "long": {"max_length": max_length, "rows": int(len(long_texts)), "fraction": round(len(long_texts) / n, 4),
                     "examples": [t[:160] + "…" for t in long_texts.head(settings.examples)]}}


# --------------------------------------------------------------------------- the whole review

def review(splits: dict[str, pd.DataFrame], settings: ReviewSettings, max_length: int,
           count_tokens: Callable[[list[str]], list[int]] | None = None, task: str = multilabel.SINGLE) -> dict:
    """Every finding, its risks and the verdict; `task` from labels.json."""
    multi = task == multilabel.MULTI
    values = pd.concat([splits[name]["label"] for name in SPLITS])
    result = {
        "task": task,
        "rows": {name: len(splits[name]) for name in SPLITS},
        "leakage": leakage(splits, settings),
        "similar": similarity(splits, settings),
        "label_conflicts": label_conflicts(splits, settings, multi),
        "imbalance": imbalance(splits, settings, multi),
        **({"rare_labels": rare_labels(splits, settings)} if multi else {}),
        "lengths": lengths(splits, settings, max_length, count_tokens),
        "personal_data": personal_data(splits, settings),
        "label_variants": label_variants(multilabel.all_labels(values) if multi else values.unique()),
    }
    result["risks"] = risks(result, settings)
    leak = result["leakage"]
    result["verdict"] = ("leakage allowed" if leak["severe"] and settings.allow_leakage
                         else "fail" if leak["severe"] else "pass")
    return result


def risks(r: dict, settings: ReviewSettings) -> list[str]:
    """One line per finding worth a decision, most serious first (the plan repeats them)."""
    out = []
    leak = r["leakage"]
    if leak["max_fraction"] > 0:
        split, against = leak["worst"]
        out.append(f"{leak['max_fraction']:.1%} of {split} rows repeat a {against} text (up to case, digits, "
                   f"punctuation): {split} scores on them are optimistic")
    multi = r.get("task") == multilabel.MULTI
    conflicts = r["label_conflicts"]
    if conflicts["texts"]:
        out.append(f"{conflicts['texts']} texts ({conflicts['rows']} rows) carry different label"
                   f"{' sets' if multi else 's'}: the model cannot be right on all of them")
    imb = r["imbalance"]
    if imb["severe"] and multi:
        minority = ", ".join(imb["minority_classes"]) or "the smallest labels"
        out.append(f"label imbalance {imb['ratio']:.1f}:1 in train, rows carrying the most vs the least frequent "
                   f"label (minority: {minority}): watch per-label recall and macro-F1, not only micro-F1")
    elif imb["severe"]:
        minority = ", ".join(imb["minority_classes"]) or "the smallest classes"
        out.append(f"class imbalance {imb['ratio']:.1f}:1 in train (minority: {minority}): "
                   "watch per-class recall, not only accuracy")
    rare = r.get("rare_labels")
    if rare and rare["labels"]:
        listed = ", ".join(f"{k} ({v})" for k, v in list(rare["labels"].items())[:10])
        more = f" and {len(rare['labels']) - 10} more" if len(rare["labels"]) > 10 else ""
        out.append(f"{len(rare['labels'])} labels have fewer than {rare['threshold']} training rows: {listed}{more}; "
                   "the model will seldom predict them and their scores rest on a handful of test rows")
    lengths_ = r["lengths"]
    if lengths_["long"]["fraction"] > 0:
        out.append(f"{lengths_['long']['rows']} texts ({lengths_['long']['fraction']:.1%}) are longer than "
                   f"model.max_length={lengths_['long']['max_length']} tokens and will be truncated")
    if lengths_["short"]["fraction"] > settings.length_risk_share:
        out.append(f"{lengths_['short']['fraction']:.1%} of texts have fewer than {lengths_['short']['words_below']} "
                   "words: little to classify on")
    similar = r["similar"]
    if similar and similar["test"]["fraction"] > settings.similarity_risk_share:
        out.append(f"{similar['test']['fraction']:.0%} of test rows have a close paraphrase in train "
                   f"(cosine ≥ {similar['threshold']}): the test measures in-distribution phrasing, "
                   "expect lower scores on new wording")
    for group in r.get("label_variants") or []:
        out.append(f"labels {', '.join(repr(label) for label in group)} differ only by case, spacing or number "
                   "format: one class written several ways splits its examples")
    pii = r["personal_data"]
    if pii["rows"]:
        kinds = ", ".join(f"{k.replace('_', ' ')} ({v['rows']})" for k, v in pii["kinds"].items() if v["rows"])
        out.append(f"{pii['rows']} texts ({pii['fraction']:.1%}) contain likely personal data: {kinds}; "
                   "mask it before publishing data or a model trained on it")
    return out


def leakage_error(r: dict, split_info: dict) -> str:
    """The message when review fails: what leaks, why it matters, and how to fix it."""
    leak = r["leakage"]
    parts = [f"{p['near_rows']} of {p['rows']} {p['split']} rows ({p['fraction']:.1%}) repeat a {p['against']} text"
             for p in leak["pairs"] if p["near_rows"]]
    example = next((p["examples"][0] for p in leak["pairs"] if p["examples"]), None)
    shown = f" (e.g. “{example[0]}” ↔ “{example[1]}”)" if example else ""
    kept = split_info.get("kept_from_source") or []
    if split_info.get("method") == "group" or kept:
        fix = (f"the dataset's own {' and '.join(kept) or 'splits'} overlap with train: de-duplicate them at the "
               "source or merge the splits into one file so prepare splits it with prepare.split=group")
    else:
        fix = ("set `split: group` in conf/prepare.yaml (prepare.split=group keeps near-duplicate texts on one "
               "side) and run `make prepare` again")
    return (f"review found severe leakage: {'; '.join(parts)}{shown}, after normalising case, digits, punctuation "
            f"and spacing. That is above review.max_leakage_fraction={leak['threshold']}: test and validation "
            f"scores would reward memorising. Fix: {fix}; or accept it knowingly with review.allow_leakage=true. "
            "Details in reports/review.md.")


def balance_markdown(r: dict) -> list[str]:
    """The class balance section; multi-label: label support in train and the rare labels."""
    imb = r["imbalance"]
    minority = ", ".join(f"`{k}` ({v})" for k, v in imb["minority_classes"].items()) or "none"
    if r.get("task") != multilabel.MULTI:
        return ["## Class balance (train)", "",
                f"Largest/smallest class: {imb['ratio']:.1f}:1 (majority `{imb['majority']}`). Minority classes "
                f"(under {imb['minority_share_threshold']:.1%} of rows): {minority}.", ""]
    rare = r["rare_labels"]
    listed = ", ".join(f"`{k}` ({v})" for k, v in rare["labels"].items()) or "none"
    return ["## Label balance (train)", "",
            f"Training rows carrying the most / the least frequent label: {imb['ratio']:.1f}:1 (most frequent "
            f"`{imb['majority']}`). Minority labels (under {imb['minority_share_threshold']:.1%} of all label "
            f"occurrences): {minority}.", "",
            f"Rare labels (fewer than {rare['threshold']} training rows, review.rare_label_min): {listed}.", ""]


def review_markdown(r: dict) -> str:
    leak = r["leakage"]
    verdict = {"pass": "✅ pass", "fail": "❌ **fail: severe leakage**",
               "leakage allowed": "⚠️ severe leakage, allowed by review.allow_leakage"}[r["verdict"]]
    lines = ["# Pre-training review", "", f"Verdict: {verdict}", "",
             "Rows: " + " · ".join(f"{k} {v}" for k, v in r["rows"].items()), "", "## Risks", ""]
    lines += [f"- {risk}" for risk in r["risks"]] or ["- none found"]
    lines += ["", "## Leakage across splits", "",
              "A row leaks when its text also occurs in the other split, exactly or after normalising case, "
              f"digits, punctuation and spacing. Fails above {leak['threshold']:.1%} of a split's rows.", "",
              md_table(["split", "against", "rows", "exact", "near (incl. exact)", "share"],
                       [(p["split"], p["against"], p["rows"], p["exact_rows"], p["near_rows"], f"{p['fraction']:.1%}")
                        for p in leak["pairs"]]), ""]
    examples = [e for p in leak["pairs"] for e in p["examples"]][:5]
    lines += [f"- “{a}” ↔ “{b}”" for a, b in examples]
    within = leak["within_split_duplicates"]
    lines += ["", "Duplicates inside a split (exact / near): "
              + " · ".join(f"{k} {v['exact']} / {v['near']}" for k, v in within.items()), ""]
    similar = r["similar"]
    if similar:
        lines += ["## Close paraphrases", "",
                  f"Rows with a train text at {similar['method']} ≥ {similar['threshold']} (not failed on: "
                  "paraphrases are expected, but they make the test easier than new wording): "
                  + " · ".join(f"{k} {similar[k]['close_rows']} of {similar[k]['rows_checked']} "
                               f"({similar[k]['fraction']:.1%})" for k in ("validation", "test")), ""]
        lines += [f"- “{a}” ↔ “{b}” ({s})" for a, b, s in similar["examples"]]
        lines.append("")
    conflicts = r["label_conflicts"]
    lines += ["## Same text, different label sets" if r.get("task") == multilabel.MULTI
              else "## Same text, different labels", "",
              f"{conflicts['texts']} texts, {conflicts['rows']} rows ({conflicts['fraction']:.1%})."]
    lines += [f"- “{e['text']}”: " + ", ".join(f"{k} ×{v}" for k, v in e["labels"].items())
              for e in conflicts["examples"]]
    lines += ["", *balance_markdown(r)]
    lengths_ = r["lengths"]
    lines += ["## Very short and truncated texts", "",
              f"- fewer than {lengths_['short']['words_below']} words: {lengths_['short']['rows']} "
              f"({lengths_['short']['fraction']:.1%})" + (": " + " · ".join(f"“{t}”" for t in lengths_["short"]["examples"])
                                                          if lengths_["short"]["examples"] else ""),
              f"- longer than model.max_length={lengths_['long']['max_length']} tokens: {lengths_['long']['rows']} "
              f"({lengths_['long']['fraction']:.1%})", ""]
    pii = r["personal_data"]
    lines += ["## Likely personal data", "",
              f"{pii['rows']} texts ({pii['fraction']:.1%}) match at least one pattern; examples are masked.", "",
              md_table(["kind", "rows", "share", "examples"],
                       [(k.replace("_", " "), v["rows"], f"{v['fraction']:.1%}",
                         " · ".join(f"“{e[:70]}”" for e in v["examples"][:3])) for k, v in pii["kinds"].items()]), ""]
    return "\n".join(lines) + "\n"
