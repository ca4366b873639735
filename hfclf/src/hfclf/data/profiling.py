"""The data profile written by `prepare`: sizes, classes, text lengths (characters, words and
tokens of the base model's tokenizer), extra columns, and its two plots.

Keys: `task` (single_label | multi_label); `labels` and `num_classes` (the individual labels);
`per_class` {split: {label: rows}} - for multi_label the rows *carrying* each label (its support),
so a split's numbers add up to more than its rows; `examples` {label: up to 3 texts carrying it}.
multi_label adds `label_cardinality` (labels per row over all splits: mean, max, and `rows_with`,
the share of rows with "0", "1", "2" and "3+" labels; 0 are out-of-scope texts) and `label_pairs`
(the 10 label pairs most often in one row: [{"labels": [a, b], "rows": n}]).
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from hfclf.data import multilabel
from hfclf.infra.render import _pyplot, md_table

log = logging.getLogger(__name__)

PERCENTILES = (5, 50, 95, 99)
# Token counts at which the profile records the share of longer texts (what a max_length would cut).
LENGTH_MARKS = (16, 32, 64, 128, 256, 384, 512, 1024)


def length_stats(values) -> dict:
    values = np.asarray(values)
    stats = {f"p{p}": float(np.percentile(values, p)) for p in PERCENTILES}
    return {"min": int(values.min()), "mean": round(float(values.mean()), 1), **stats, "max": int(values.max())}


def token_lengths(texts: pd.Series, model_name: str, sample: int, seed: int) -> tuple[np.ndarray, dict]:
    """Token counts (special tokens included) by the base model's tokenizer; no model weights are loaded.

    Beyond `sample` texts a random sample is tokenized: percentiles need no more.
    """
    from hfclf.train import bert_tokenizer
    from hfclf.train.modeling import resolve_model

    folder, origin = resolve_model(model_name)
    tokenizer = bert_tokenizer.load(folder)
    tokenizer.model_max_length = sys.maxsize   # transformers' tokenizers: no "longer than the maximum" warning
    config = Path(folder) / "config.json"  # read directly: AutoConfig would import torch (seconds)
    positions = json.loads(config.read_text(encoding="utf-8")).get("max_position_embeddings") if config.exists() else None
    if len(texts) > sample:
        texts = texts.sample(sample, random_state=seed)
    ids = tokenizer(texts.tolist(), truncation=False, padding=False, return_attention_mask=False,
                    return_token_type_ids=False)["input_ids"]   # longer than the model maximum: what we measure
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    info = {"tokenizer": model_name, "tokenizer_origin": origin, "tokenized_rows": int(len(lengths)),
            "model_max_positions": positions,
            "longer_than": {str(mark): round(float((lengths > mark).mean()), 5) for mark in LENGTH_MARKS}}
    return lengths, info


def profile(splits: dict[str, pd.DataFrame], labels: list[str], origin: dict, dropped: dict,
            fingerprint: str, tokens: tuple[np.ndarray, dict] | None = None, split: dict | None = None,
            task: str = multilabel.SINGLE) -> dict:
    """The profile as a JSON-able dict; `tokens` from token_lengths(), `split` says how splits were made,
    `task` multi_label reads each `label` as a canonical label set (keys: module docstring)."""
    multi = task == multilabel.MULTI
    everything = pd.concat(splits.values(), ignore_index=True)
    if multi:
        per_class = {split: multilabel.label_support(frame["label"], labels) for split, frame in splits.items()}
        carrying = multilabel.matrix(everything["label"], labels).astype(bool)
        examples = {label: everything.loc[carrying[:, i], "text"].head(3).tolist() for i, label in enumerate(labels)}
    else:
        per_class = {split: frame["label"].value_counts().reindex(labels, fill_value=0).astype(int).to_dict()
                     for split, frame in splits.items()}
        examples = {label: everything.loc[everything["label"] == label, "text"].head(3).tolist() for label in labels}
    extra = [c for c in everything.columns if c not in ("text", "label")]
    token_stats = {"text_tokens": length_stats(tokens[0]) | tokens[1]} if tokens is not None else {}
    label_sets = ({"label_cardinality": multilabel.cardinality(everything["label"]),
                   "label_pairs": multilabel.co_occurrence(everything["label"])} if multi else {})
    return {
        "source": origin,
        "task": task,
        "split": split or {},
        "fingerprint": fingerprint,
        "rows": {split: len(frame) for split, frame in splits.items()},
        "rows_total": len(everything),
        "dropped": dropped,
        "num_classes": len(labels),
        "labels": labels,
        "per_class": per_class,
        **label_sets,
        "text_chars": length_stats(everything["text"].str.len()),
        "text_words": length_stats(everything["text"].str.split().str.len()),
        **token_stats,
        "examples": examples,
        "extra_columns": {c: {"distinct": int(everything[c].nunique()),
                              "top": everything[c].astype(str).value_counts().head(5).to_dict()} for c in extra},
    }


def profile_markdown(p: dict) -> str:
    multi = p.get("task") == multilabel.MULTI
    unit = "label" if multi else "class"
    rows = [(label, *(p["per_class"][s].get(label, 0) for s in p["rows"]),
             sum(p["per_class"][s].get(label, 0) for s in p["rows"])) for label in p["labels"]]
    totals = ("**rows**" if multi else "**total**", *p["rows"].values(), p["rows_total"])
    lengths = [(name, *(_number(p[key][k]) for k in ("min", "p50", "p95", "p99", "max")))
               for name, key in (("characters", "text_chars"), ("words", "text_words"))
               + ((("tokens", "text_tokens"),) if "text_tokens" in p else ())]
    lines = [
        "# Data profile", "",
        f"Source: `{p['source']}` · fingerprint `{p['fingerprint']}`", "",
        (f"{p['rows_total']} rows, {p['num_classes']} labels (a row carries a set of them); dropped: " if multi
         else f"{p['rows_total']} rows in {p['num_classes']} classes; dropped: ")
        + ", ".join(f"{k.replace('_', ' ')}: {_dropped(v)}" for k, v in p["dropped"].items()), "",
        f"## Rows per {unit} and split", "",
        *(["A row counts once under each of its labels, so the columns add up to more than the rows.", ""]
          if multi else []),
        md_table(["label", *p["rows"], "total"], rows + [totals]), "",
        f"![rows per {unit}](figures/class_counts.png)", "",
        *(_label_sets_markdown(p) if multi else []),
        "## Text length", "",
        md_table(["unit", "min", "median", "p95", "p99", "max"], lengths), "",
    ]
    if "text_tokens" in p:
        tok = p["text_tokens"]
        longer = ", ".join(f"{share:.1%} over {mark}" for mark, share in tok["longer_than"].items()
                           if int(mark) <= 2 * max(tok["max"], 16))
        lines += [f"Tokens by the `{tok['tokenizer']}` tokenizer ({tok['tokenized_rows']} texts, special tokens "
                  f"included; the model takes at most {tok['model_max_positions']}): {longer}.", ""]
    if p.get("split"):
        lines += [f"Splits: {_describe_split(p['split'])}", ""]
    lines += ["![text lengths](figures/text_lengths.png)", "", f"## Examples per {unit}", ""]
    for label, examples in p["examples"].items():
        lines.append(f"- **{label}**: " + " · ".join(f"“{e[:80]}”" for e in examples))
    if p.get("label_variants"):
        lines += ["", "## Label variants (warning)", "",
                  "These labels differ only by case, surrounding spaces or number format; if each group is one "
                  "class, fix the data (review.fail_on_label_variants=true makes review fail on them):", ""]
        lines += [f"- {' · '.join(f'`{label}`' for label in group)}" for group in p["label_variants"]]
    if p.get("malformed_rows"):
        lines += ["", "## Dropped malformed rows", "",
                  f"{len(p['malformed_rows'])} rows lacked the text or label column (under prepare.max_malformed_share):", ""]
        lines += [f"- line {row['line']}: {row['reason']} (keys: {', '.join(map(str, row['keys']))})"
                  for row in p["malformed_rows"][:50]]
    if p["extra_columns"]:
        lines += ["", "## Extra columns", ""]
        for column, info in p["extra_columns"].items():
            top = ", ".join(f"`{k}` ({v})" for k, v in info["top"].items())
            lines.append(f"- `{column}`: {info['distinct']} distinct values; most common: {top}")
    return "\n".join(lines) + "\n"


def _dropped(value) -> str:
    """A `dropped` entry: a count, or label -> rows (prepare.rare_labels=drop)."""
    if isinstance(value, dict):
        return ", ".join(f"`{k}` ({v})" for k, v in value.items()) or "none"
    return str(value)


def _label_sets_markdown(p: dict) -> list[str]:
    """multi_label: labels per row and the label pairs that most often occur together."""
    card = p["label_cardinality"]
    shares = " · ".join(f"{k} label{'' if k == '1' else 's'}: {v:.1%}" for k, v in card["rows_with"].items())
    lines = ["## Labels per row", "",
             f"Mean {card['mean']:.2f}, at most {card['max']}. Share of rows with {shares} "
             "(rows with 0 labels are out-of-scope texts).", "", "## Labels that occur together", ""]
    if not p["label_pairs"]:
        return lines + ["No row carries two labels.", ""]
    return lines + [md_table(["labels", "rows"], [(" + ".join(pair["labels"]), pair["rows"])
                                                  for pair in p["label_pairs"]]), ""]


def _number(value):
    """Whole numbers print without decimals in the tables (md_table gives floats 4 decimals)."""
    return int(value) if float(value).is_integer() else round(float(value), 1)


def _describe_split(split: dict) -> str:
    kept = split.get("kept_from_source") or []
    made = [name for name in ("validation", "test") if name not in kept]
    parts = [f"{', '.join(kept)} kept as the source has them"] if kept else []
    if made:
        how = ", iterative stratification over the label sets" if split.get("stratification") == "iterative" else ""
        parts.append(f"{', '.join(made)} made by prepare (`{split.get('method')}`{how})")
    return "; ".join(parts) + "."


def plot_class_counts(p: dict, path: Path):
    """Horizontal bars per class (multi-label: rows carrying each label), stacked by split; returns the
    figure (for MLflow)."""
    plt = _pyplot()
    labels = p["labels"]
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.32 * len(labels) + 1.2)))
    left = np.zeros(len(labels))
    for split, counts in p["per_class"].items():
        values = np.array([counts.get(label, 0) for label in labels], dtype=float)
        ax.barh(labels, values, left=left, label=split)
        left += values
    ax.invert_yaxis()
    ax.set_xlabel("rows")
    ax.set_title("Rows per label and split" if p.get("task") == multilabel.MULTI else "Rows per class and split")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return fig


def plot_lengths(chars: np.ndarray, tokens: np.ndarray | None, max_length: int, path: Path):
    """Histograms of text length in characters and (when known) tokens, with the model's max_length."""
    plt = _pyplot()
    panels = 2 if tokens is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.4), squeeze=False)
    axes[0][0].hist(chars, bins=50, color="tab:blue")
    axes[0][0].set_xlabel("characters")
    axes[0][0].set_ylabel("texts")
    if tokens is not None:
        ax = axes[0][1]
        span = int(tokens.max()) - int(tokens.min())
        bins = np.arange(tokens.min(), tokens.max() + 2) - 0.5 if span <= 150 else 60
        ax.hist(tokens, bins=bins, color="tab:green")
        if max_length <= 1.5 * tokens.max():
            ax.axvline(max_length, color="tab:red", linestyle="--", label=f"model.max_length = {max_length}")
            ax.legend(fontsize=8)
        else:
            ax.set_title(f"all below model.max_length = {max_length}", fontsize=9)
        ax.set_xlabel("tokens")
    fig.suptitle("Text length")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return fig
