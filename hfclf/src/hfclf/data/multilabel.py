"""Multi-label data (data.task=multi_label): a text carries a set of labels.

In the prepared splits a row's `label` is its label set written canonically - a JSON list of the
labels, sorted and without repeats (`["billing", "refund"]`) - so every split stays a plain
text/label table: hashing (the fingerprint), grouping and duplicate checks work unchanged, and a
parquet file reads the same everywhere. `labels.json` records `"task": "multi_label"`; every stage
after prepare reads the task from there (or from the model's classifier.json), never from config.

Reading a raw label column into label sets (JSON lists, delimited strings or 0/1 columns) is
`parse_label_sets`; the model-side arrays are `matrix` (rows x labels, 0/1).
"""
from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from itertools import combinations
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from hfclf.infra.errors import UserError

log = logging.getLogger(__name__)

SINGLE, MULTI = "single_label", "multi_label"
TASKS = (SINGLE, MULTI)


def is_multi_label(info: dict | None) -> bool:
    """True for labels.json / classifier.json contents of a multi-label task."""
    return bool(info) and info.get("task", SINGLE) == MULTI


def encode(labels: Iterable[str]) -> str:
    """A label set in its canonical form: a JSON list, sorted, no repeats."""
    return json.dumps(sorted({str(label) for label in labels}), ensure_ascii=False)


def decode(value: str) -> list[str]:
    """The labels of one canonical label set."""
    return json.loads(value)


def decode_all(values: Iterable[str]) -> list[list[str]]:
    return [json.loads(v) for v in values]


def all_labels(values: Iterable[str]) -> list[str]:
    """The sorted distinct labels across canonical label sets."""
    return sorted({label for v in values for label in json.loads(v)})


def matrix(values: Iterable[str], labels: Sequence[str]) -> np.ndarray:
    """Rows x labels 0/1 matrix (float32) of canonical label sets; labels outside `labels` are ignored."""
    index = {label: i for i, label in enumerate(labels)}
    values = list(values)
    out = np.zeros((len(values), len(labels)), dtype=np.float32)
    for row, value in enumerate(values):
        for label in json.loads(value):
            column = index.get(label)
            if column is not None:
                out[row, column] = 1.0
    return out


def sets_from_matrix(indicator: np.ndarray, labels: Sequence[str]) -> list[list[str]]:
    """The label set of each row of a 0/1 (or boolean) matrix."""
    return [[labels[j] for j in np.flatnonzero(row)] for row in np.asarray(indicator)]


def label_support(values: pd.Series, labels: Sequence[str]) -> dict[str, int]:
    """Rows carrying each label."""
    counts = matrix(values, labels).sum(0)
    return {label: int(n) for label, n in zip(labels, counts)}


def union(values: Iterable[str]) -> str:
    """The canonical set of all labels of several canonical label sets (a group of near-duplicates)."""
    return encode(label for value in values for label in json.loads(value))


def readable(value: str) -> str:
    """A canonical label set for people: `billing + refund`, or `(no label)`."""
    labels = json.loads(value)
    return " + ".join(labels) if labels else "(no label)"


# --------------------------------------------------------------------------- configuration

FORMATS = ("auto", "json", "delimited", "columns")


@dataclass(frozen=True)
class LabelSpec:
    """How the raw data holds its labels: conf/data's task, label_format, label_delimiter, label_columns."""
    task: str = SINGLE
    format: str = "auto"
    delimiter: str = ";"
    columns: tuple[str, ...] = ()

    @property
    def multi(self) -> bool:
        return self.task == MULTI

    @classmethod
    def from_config(cls, data) -> "LabelSpec":
        """Read and check the keys from cfg.data; a project made before multi-label has none of them."""
        task = data.get("task", SINGLE) or SINGLE
        if task not in TASKS:
            raise UserError(f"data.task must be {' or '.join(TASKS)}, not {task!r} (conf/data/default.yaml).")
        fmt = data.get("label_format", "auto") or "auto"
        if fmt not in FORMATS:
            raise UserError(f"data.label_format must be one of {', '.join(FORMATS)}, not {fmt!r} "
                            "(conf/data/default.yaml).")
        delimiter = data.get("label_delimiter", ";")
        columns = data.get("label_columns") or ()
        columns = (columns,) if isinstance(columns, str) else tuple(str(c) for c in columns)
        spec = cls(task, fmt, ";" if delimiter is None else str(delimiter), columns)
        if spec.multi:
            spec._check()
        return spec

    def _check(self) -> None:
        if self.format == "columns" and not self.columns:
            raise UserError("data.label_format=columns needs data.label_columns: the 0/1 columns, one per label, "
                            "e.g. label_columns: [billing, refund] in conf/data/default.yaml.")
        if self.columns and self.format in ("json", "delimited"):
            raise UserError(f"data.label_columns is set ({', '.join(self.columns)}) but data.label_format="
                            f"{self.format} reads data.label_column: set label_format to columns (or auto), "
                            "or label_columns to null.")
        if self.format in ("auto", "delimited") and not self.columns and not self.delimiter:
            raise UserError("data.label_delimiter is empty: set the character that separates labels in a cell, "
                            "e.g. ';'.")

    def label_keys(self, label_column: str) -> tuple[str, ...]:
        """The raw columns holding the labels."""
        return self.columns if self.multi and self.columns else (label_column,)


def resolve_format(spec: LabelSpec, cells: pd.Series) -> str:
    """json, delimited or columns: `auto` picks columns when label_columns is set, else json when every
    non-empty cell is a JSON list (starts with `[`), else delimited."""
    if spec.format != "auto":
        return spec.format
    if spec.columns:
        return "columns"
    filled = cells[~cells.map(_is_empty)]
    listed = filled.map(lambda v: _is_list(v) or (isinstance(v, str) and v.lstrip().startswith("[")))
    if len(filled) and listed.all():
        log.info("data.label_format=auto: reading the labels as JSON lists (every non-empty cell starts with '[')")
        return "json"
    if listed.any():
        log.warning("data.label_format=auto: %d of %d label cells look like JSON lists but the others do not, so "
                    "all are read as labels separated by %r; set data.label_format=json to have the others refused",
                    int(listed.sum()), len(filled), spec.delimiter)
    else:
        log.info("data.label_format=auto: reading the labels as text separated by %r (data.label_delimiter)",
                 spec.delimiter)
    return "delimited"


# --------------------------------------------------------------------------- parsing raw label sets

TRUE_CELLS, FALSE_CELLS = {"1", "1.0", "true"}, {"0", "0.0", "false"}
SHOWN_PROBLEMS = 5
HINTS = {
    "json": 'each cell must be a JSON list of labels with at least one label, e.g. ["billing", "refund"]',
    "delimited": "each cell must hold at least one label, several separated by {delimiter!r}",
    "columns": "each label column must hold 0 or 1 (also \"0\"/\"1\", true/false, 0.0/1.0) and each row at least one 1",
}


class _Bad(ValueError):
    """One cell that is not a label set; `column` when the problem is in one of several columns."""
    def __init__(self, reason: str, column: str | None = None):
        super().__init__(reason)
        self.reason, self.column = reason, column


class _Number(str):
    """A JSON number inside a label cell, kept as written (`2.0` stays "2.0")."""


def parse_label_sets(frame: pd.DataFrame, label_column: str, label_columns: Sequence[str] | None, fmt: str,
                     delimiter: str, source: str, split_name: str, first_line: int | None = None) -> pd.Series:
    """Each row's label set in canonical form (see `encode`), indexed like `frame`.

    `fmt` is json, delimited or columns (`auto` is resolved on this frame alone). A row with no label,
    or a cell that cannot be read, raises one UserError naming `source`, the split, up to five rows
    (1-based data row; the file line when `first_line`, the line of data row 1, is given) and the
    column, with the count. `frame` must have a 0..n-1 index (row numbers come from it)."""
    if fmt == "auto":
        cells = frame[label_column] if label_column in frame.columns else pd.Series([], dtype=object)
        fmt = resolve_format(LabelSpec(MULTI, "auto", delimiter, tuple(label_columns or ())), cells)
    rows, read = _cells(frame, label_column, label_columns, fmt, delimiter, source, split_name)
    sets, problems = [], []
    for position, values in zip(frame.index, rows):
        try:
            labels = read(values)
            if not labels:
                raise _Bad(_no_label(values, fmt))
            sets.append(encode(labels))
        except _Bad as bad:
            problems.append((position, bad))
            sets.append(None)
    if problems:
        raise UserError(_problems_message(problems, frame, fmt, delimiter, label_column, label_columns, source,
                                          split_name, first_line))
    return pd.Series(sets, index=frame.index, dtype=object)


def _cells(frame: pd.DataFrame, label_column: str, label_columns: Sequence[str] | None, fmt: str, delimiter: str,
           source: str, split_name: str) -> tuple[list, Callable[[object], list[str]]]:
    """The raw label cells of each row (a tuple per row for columns) and the reader of one row's cells."""
    if fmt == "columns":
        columns = list(label_columns or ())
        missing = [c for c in columns if c not in frame.columns]
        if missing or not columns:
            raise UserError(f"'{source}'{_split(split_name)} has no column {', '.join(repr(m) for m in missing)} "
                            f"(data.label_columns). Its columns are: {', '.join(map(str, frame.columns))}.")
        return list(frame[columns].itertuples(index=False, name=None)), lambda values: _from_columns(values, columns)
    if fmt == "json":
        return frame[label_column].tolist(), _from_json
    return frame[label_column].tolist(), lambda value: _from_delimited(value, delimiter)


def _split(split_name: str) -> str:
    return "" if split_name == "all" else f" (split '{split_name}')"


def _is_empty(value) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and np.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def _is_list(value) -> bool:
    return isinstance(value, (list, tuple, np.ndarray))


def _shown(value) -> str:
    text = str(value) if isinstance(value, str) else repr(value)
    return repr(text if len(text) <= 40 else text[:37] + "...")


def _label_item(item) -> str:
    """One item of a JSON list: a string (stripped) or a number as written."""
    if isinstance(item, str):            # JsonNumber (a number in a JSONL file) is a str too
        return str.__str__(item).strip()
    if isinstance(item, (int, float, np.integer, np.floating)) and not isinstance(item, (bool, np.bool_)):
        if isinstance(item, (float, np.floating)) and not np.isfinite(item):
            raise _Bad(f"an item is {item!r}, not a label")
        return str(item)
    raise _Bad(f"an item is {_json_kind(item)}, not a label (a string or number)")


def _refuse_constant(name: str):
    raise _Bad(f"{name} is not a label")


def _json_kind(value) -> str:
    if isinstance(value, _Number):
        return "a number"
    if value is None:
        return "null"
    return {str: "a string", dict: "an object", bool: "true/false"}.get(type(value), f"a {type(value).__name__}")


def _from_json(value) -> list[str]:
    if _is_empty(value):
        return []
    parsed = value
    if isinstance(value, str):
        try:
            parsed = json.loads(value, parse_int=_Number, parse_float=_Number, parse_constant=_refuse_constant)
        except json.JSONDecodeError as err:
            raise _Bad(f"invalid JSON {_shown(value)} ({err.msg} at character {err.pos + 1})") from None
    if not _is_list(parsed):
        raise _Bad(f"{_shown(value)} is {_json_kind(parsed)}, not a JSON list of labels")
    return [label for label in map(_label_item, list(parsed)) if label]


def _from_delimited(value, delimiter: str) -> list[str]:
    if _is_empty(value):
        return []
    if _is_list(value):
        raise _Bad(f"{_shown(list(value))} is a list, not text (set data.label_format=json)")
    if isinstance(value, (bool, np.bool_)):   # as in single-label data: true / false
        return ["true" if value else "false"]
    text = str.__str__(value) if isinstance(value, str) else str(value)
    return [item.strip() for item in text.split(delimiter) if item.strip()]


def _indicator(value, column: str) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if _is_empty(value):
        raise _Bad("empty cell (write 0 or 1)", column)
    text = (str.__str__(value) if isinstance(value, str) else str(value)).strip().lower()
    if text in TRUE_CELLS or text in FALSE_CELLS:
        return text in TRUE_CELLS
    raise _Bad(f"{_shown(value)} is not 0 or 1", column)


def _from_columns(values: tuple, columns: Sequence[str]) -> list[str]:
    return [column for column, value in zip(columns, values) if _indicator(value, column)]


def _no_label(value, fmt: str) -> str:
    if fmt == "columns":
        return "no label: every label column is 0"
    if _is_empty(value):
        return "empty cell"
    return f"{_shown(value if isinstance(value, str) else list(value))} holds no label"


def _file_lines(frame: pd.DataFrame, first_line: int | None):
    """Row position -> file line, when rows map to lines (no text cell spans several lines)."""
    if first_line is None:
        return None
    spans = frame.apply(lambda column: column.map(lambda v: isinstance(v, str) and ("\n" in v or "\r" in v))).any()
    return None if spans.any() else (lambda position: position + first_line)


def _problems_message(problems, frame, fmt, delimiter, label_column, label_columns, source, split_name,
                      first_line) -> str:
    lines = _file_lines(frame, first_line)
    shown = []
    for position, bad in problems[:SHOWN_PROBLEMS]:
        where = f"row {position + 1}" + (f" (line {lines(position)})" if lines else "")
        where += f" column '{bad.column}'" if bad.column else ""
        shown.append(f"{where}: {bad.reason}")
    more = f"; and {len(problems) - SHOWN_PROBLEMS} more" if len(problems) > SHOWN_PROBLEMS else ""
    columns = (f"the label columns {', '.join(repr(c) for c in label_columns)} (data.label_columns)"
               if fmt == "columns" else f"column '{label_column}'")
    return (f"'{source}'{_split(split_name)}: {len(problems)} row(s) of {columns} have no label or cannot be read "
            f"as label sets (data.label_format={fmt}): {'; '.join(shown)}{more}. In multi_label mode "
            f"{HINTS[fmt].format(delimiter=delimiter)}: fix or remove these rows.")


# --------------------------------------------------------------------------- rare labels (both tasks)

RARE_POLICIES = ("refuse", "drop")


def rare_labels(support: pd.Series, minimum: int, policy: str, source: str, column: str) -> dict[str, int]:
    """Labels (single-label: classes) with fewer than `minimum` rows, from `support` (label -> rows).

    policy `refuse` raises a UserError naming them (`column` says where they are written); `drop`
    returns them, label -> rows, for the caller to drop."""
    if policy not in RARE_POLICIES:
        raise UserError(f"prepare.rare_labels must be 'refuse' or 'drop', not {policy!r} (conf/prepare.yaml).")
    too_few = support[support < minimum]
    if too_few.empty:
        return {}
    if policy == "refuse":
        listed = ", ".join(f"{label!r} ({n})" for label, n in too_few.items())
        raise UserError(f"'{source}': {len(too_few)} label(s) in {column} have fewer than {minimum} rows, too few "
                        f"to split into train/validation/test: {listed}. Add examples, merge or drop these labels, "
                        "or lower prepare.min_examples_per_class; or set prepare.rare_labels=drop to leave them out.")
    return {str(label): int(n) for label, n in too_few.items()}


def drop_labels(frames: dict[str, pd.DataFrame], dropped: Iterable[str]) -> tuple[dict[str, pd.DataFrame], int]:
    """Remove `dropped` labels from every label set; rows left without a label go too (their count returned)."""
    dropped = set(dropped)
    out, emptied = {}, 0
    for name, frame in frames.items():
        kept = frame["label"].map(lambda value: encode(set(json.loads(value)) - dropped))
        empty = kept.eq("[]")
        emptied += int(empty.sum())
        out[name] = frame.assign(label=kept)[~empty].reset_index(drop=True)
    return out, emptied


def support_series(values: pd.Series) -> pd.Series:
    """Rows carrying each label, most frequent first (ties by name)."""
    counts = Counter(label for value in values for label in json.loads(value))
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return pd.Series(dict(ordered), dtype=int)


# --------------------------------------------------------------------------- statistics for the profile

def cardinality(values: pd.Series) -> dict:
    """Labels per row: mean, max, and the share of rows with 0, 1, 2 and 3+ labels."""
    sizes = np.fromiter((len(json.loads(v)) for v in values), dtype=np.int64, count=len(values))
    if not len(sizes):
        return {"mean": 0.0, "max": 0, "rows_with": {"0": 0.0, "1": 0.0, "2": 0.0, "3+": 0.0}}
    shares = {str(n): float((sizes == n).mean()) for n in (0, 1, 2)} | {"3+": float((sizes >= 3).mean())}
    return {"mean": round(float(sizes.mean()), 3), "max": int(sizes.max()),
            "rows_with": {k: round(v, 4) for k, v in shares.items()}}


def co_occurrence(values: pd.Series, top: int = 10) -> list[dict]:
    """The `top` most frequent label pairs in one row: [{"labels": [a, b], "rows": n}], most frequent first."""
    pairs = Counter(pair for value in values for pair in combinations(json.loads(value), 2))
    ordered = sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return [{"labels": list(pair), "rows": n} for pair, n in ordered]


# --------------------------------------------------------------------------- iterative stratification

def iterative_holdout(indicator: np.ndarray, held: int, seed: int) -> np.ndarray:
    """A boolean mask of about `held` items chosen by iterative stratification (Sechidis et al. 2011,
    `iterative-stratification`): each label keeps close to its share on both sides. Then every label
    the items carry keeps at least one item on the unheld side (train) where the held side can spare one."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

    items = indicator.shape[0]
    y = indicator.astype(bool)
    if y.shape[1] < 2:   # the library wants a multi-label indicator: a constant column changes nothing
        y = np.hstack([y, np.zeros((items, 2 - y.shape[1]), dtype=bool)])
    splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=held, random_state=seed)
    _, picked = next(splitter.split(np.zeros(items), y))
    mask = np.zeros(items, dtype=bool)
    mask[picked] = True
    return keep_labels_unheld(indicator, mask)


def keep_labels_unheld(indicator: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """For each label found only among held items: move its held item with the fewest labels back, and
    hold out in its place the first unheld item whose every label stays on the unheld side (none: the
    held side shrinks, never to nothing)."""
    mask = mask.copy()
    y = indicator.astype(bool)
    for label in np.flatnonzero(y.any(0)):
        if y[~mask, label].any():
            continue
        unheld_support = y[~mask].sum(0)
        spare = np.flatnonzero(~mask & ~(y & (unheld_support < 2)).any(1))
        if not len(spare) and mask.sum() <= 1:
            continue
        carriers = np.flatnonzero(mask & y[:, label])
        mask[carriers[np.argmin(y[carriers].sum(1))]] = False
        if len(spare):
            mask[spare[0]] = True
    return mask


# --------------------------------------------------------------------------- validation (dataset.validate)

def dataset_format(frames: dict[str, pd.DataFrame], text_column: str, label_column: str, spec: LabelSpec) -> str:
    """The one format (json, delimited, columns) of every split's label cells, `auto` resolved over all rows
    that have a text."""
    if spec.format != "auto" or spec.columns:
        return resolve_format(spec, pd.Series([], dtype=object))
    cells = [f.loc[f[text_column].notna(), label_column] for f in frames.values()
             if text_column in f.columns and label_column in f.columns]
    return resolve_format(spec, pd.concat(cells, ignore_index=True) if cells else pd.Series([], dtype=object))


def label_set_rows(frame: pd.DataFrame, text_column: str, label_column: str, spec: LabelSpec, fmt: str, source: str,
                   split_name: str, first_line: int | None = None) -> tuple[pd.DataFrame, int]:
    """The rows that have a text, as columns text, label (the canonical label set) + extras, the raw label
    column(s) removed; and how many rows were dropped for an empty text."""
    frame = frame.reset_index(drop=True)
    text = frame[text_column]
    empty = text.isna() | text.astype(str).str.strip().eq("")
    sets = parse_label_sets(frame[~empty], label_column, spec.columns, fmt, spec.delimiter, source, split_name,
                            first_line)
    raw = [c for c in spec.label_keys(label_column) if c != text_column]
    rows = frame[~empty].drop(columns=raw).rename(columns={text_column: "text"}).assign(label=sets)
    return rows, int(empty.sum())


def check_label_sets(frames: dict[str, pd.DataFrame], source: str, where: str, minimum: int,
                     policy: str) -> tuple[dict[str, pd.DataFrame], dict[str, int], int]:
    """At least two labels; labels with fewer than `minimum` rows refused or removed from every set
    (prepare.rare_labels). Returns the frames, the dropped labels (label -> rows) and how many rows
    were left without a label and dropped."""
    support = support_series(pd.concat([f["label"] for f in frames.values()]))
    if len(support) < 2:
        raise UserError(f"'{source}': {where} hold(s) only one label ({support.index[0]!r}, on all "
                        f"{support.iloc[0]} rows); a multi-label classifier needs at least two.")
    rare = rare_labels(support, minimum, policy, source, where)
    if not rare:
        return frames, {}, 0
    frames, emptied = drop_labels(frames, rare)
    log.warning("removed %d label(s) with fewer than %d rows from every label set (prepare.rare_labels=drop): %s; "
                "%d rows had no other label and were dropped", len(rare), minimum,
                ", ".join(f"{k} ({v})" for k, v in rare.items()), emptied)
    left = support_series(pd.concat([f["label"] for f in frames.values()]))
    if len(left) < 2:
        raise UserError(f"'{source}': after removing the labels with fewer than {minimum} rows "
                        f"(prepare.rare_labels=drop), {len(left)} label is left; a multi-label classifier needs "
                        "at least two.")
    return frames, rare, emptied
