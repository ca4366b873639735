"""The data profile written by `prepare`: sizes, classes, text lengths, extra columns."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .reports import md_table

PERCENTILES = (5, 50, 95, 99)


def length_stats(values) -> dict:
    values = np.asarray(values)
    stats = {f"p{p}": float(np.percentile(values, p)) for p in PERCENTILES}
    return {"min": int(values.min()), "mean": round(float(values.mean()), 1), **stats, "max": int(values.max())}


def profile(splits: dict[str, pd.DataFrame], labels: list[str], origin: dict, dropped: dict,
            fingerprint: str) -> dict:
    everything = pd.concat(splits.values(), ignore_index=True)
    per_class = {split: frame["label"].value_counts().reindex(labels, fill_value=0).astype(int).to_dict()
                 for split, frame in splits.items()}
    extra = [c for c in everything.columns if c not in ("text", "label")]
    return {
        "source": origin,
        "fingerprint": fingerprint,
        "rows": {split: len(frame) for split, frame in splits.items()},
        "rows_total": len(everything),
        "dropped": dropped,
        "num_classes": len(labels),
        "labels": labels,
        "per_class": per_class,
        "text_chars": length_stats(everything["text"].str.len()),
        "text_words": length_stats(everything["text"].str.split().str.len()),
        "examples": {label: everything.loc[everything["label"] == label, "text"].head(3).tolist()
                     for label in labels},
        "extra_columns": {c: {"distinct": int(everything[c].nunique()),
                              "top": everything[c].astype(str).value_counts().head(5).to_dict()} for c in extra},
    }


def profile_markdown(p: dict) -> str:
    rows = [(label, *(p["per_class"][s].get(label, 0) for s in p["rows"]),
             sum(p["per_class"][s].get(label, 0) for s in p["rows"])) for label in p["labels"]]
    lengths = [(name, *(p[key][k] for k in ("min", "p50", "p95", "p99", "max")))
               for name, key in (("characters", "text_chars"), ("words", "text_words"))
               + ((("tokens", "text_tokens"),) if "text_tokens" in p else ())]
    lines = [
        "# Data profile", "",
        f"Source: `{p['source']}` · fingerprint `{p['fingerprint']}`", "",
        f"{p['rows_total']} rows in {p['num_classes']} classes; dropped: "
        + ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in p["dropped"].items()), "",
        "## Rows per class and split", "",
        md_table(["label", *p["rows"], "total"], rows + [("**total**", *p["rows"].values(), p["rows_total"])]), "",
        "## Text length", "",
        md_table(["unit", "min", "median", "p95", "p99", "max"], lengths), "",
        "## Examples per class", "",
    ]
    for label, examples in p["examples"].items():
        lines.append(f"- **{label}**: " + " · ".join(f"“{e[:80]}”" for e in examples))
    if p["extra_columns"]:
        lines += ["", "## Extra columns", ""]
        for column, info in p["extra_columns"].items():
            top = ", ".join(f"`{k}` ({v})" for k, v in info["top"].items())
            lines.append(f"- `{column}`: {info['distinct']} distinct values; most common: {top}")
    return "\n".join(lines) + "\n"
