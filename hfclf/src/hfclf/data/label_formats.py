"""Reading raw labels into label sets (data.task=multi_label): the configuration (`LabelSpec`, from
conf/data's label_format, label_delimiter, label_columns), the formats - a JSON list per cell
(`["billing", "refund"]`), delimited labels (`billing;refund`), or one 0/1 column per label - and
the one-line errors naming file, row (and CSV line) and column for a cell with no label or one
that cannot be read. The canonical form the labels are written in is data/multilabel.py's.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from hfclf.data.multilabel import MULTI, SINGLE, TASKS, encode
from hfclf.infra.errors import UserError

log = logging.getLogger(__name__)


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


# --------------------------------------------------------------------------- rows of a split

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


