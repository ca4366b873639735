"""A dataset's columns, and which of them hold the text and the label - from the card's features
or from the first kilobytes of a CSV / TSV / JSONL data file (never the whole file).
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import PurePosixPath

PEEKABLE = {".csv": ",", ".tsv": "\t", ".jsonl": None, ".json": None}   # extension -> CSV delimiter
STRING_TYPES = {"string", "large_string"}
LABEL_TYPES = {"string", "large_string", "int64", "int32", "int16", "int8", "bool", "?"}


# --------------------------------------------------------------------------- columns from a file's head

def columns_from_head(filename: str, data: bytes) -> tuple[dict[str, str], dict[str, int], int]:
    """Column names, their types and distinct values (from >= 20 complete rows), and the rows read,
    from the first bytes of a CSV, TSV or JSONL file."""
    text = data.decode("utf-8", errors="replace").lstrip("\ufeff")
    complete = text[: text.rfind("\n") + 1] if "\n" in text else text
    suffix = PurePosixPath(filename).suffix.lower()
    rows: list[dict] = []
    if PEEKABLE.get(suffix):
        reader = csv.DictReader(io.StringIO(complete), delimiter=PEEKABLE[suffix])
        try:
            rows = list(reader)
            header = reader.fieldnames or []
        except csv.Error:
            return {}, {}, 0
        columns = {name: _guess_type([r.get(name) for r in rows]) for name in header}
    else:
        for line in complete.splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                rows.append(record)
        columns = {}
        for row in rows:
            for key, value in row.items():
                columns.setdefault(key, _json_type(value))
    seen = {name: len({str(r.get(name)) for r in rows}) for name in columns} if len(rows) >= 20 else {}
    return columns, seen, len(rows)


def _guess_type(values: list) -> str:
    values = [v for v in values if v not in (None, "")]
    if not values:
        return "?"
    for kind, cast in (("int64", int), ("float64", float)):
        try:
            for v in values:
                cast(v)
            return kind
        except ValueError:
            continue
    return "string"


def _json_type(value) -> str:
    return {str: "string", bool: "bool", int: "int64", float: "float64"}.get(type(value), "nested")


# --------------------------------------------------------------------------- which columns hold the text and the label

def pick_text(columns: dict[str, str], names) -> str | None:
    """The likeliest text column: a string column named like text, else the only free string column."""
    strings = [c for c, t in columns.items() if t in STRING_TYPES and not _is_identifier(c)]
    lowered = {c.lower(): c for c in strings}
    for name in names:
        if name in lowered:
            return lowered[name]
    return strings[0] if len(strings) == 1 else None


def pick_label(columns: dict[str, str], classes: dict[str, int], names, text_column: str | None) -> str | None:
    """The likeliest label: a class_label feature, else a column named like a label, else a string
    column with few distinct values in the rows seen."""
    labelled = [c for c, t in columns.items() if t == "class_label"]
    if labelled:
        return labelled[0]
    usable = [c for c, t in columns.items() if t in LABEL_TYPES and c != text_column and not _is_identifier(c)]
    lowered = {c.lower(): c for c in usable}
    for name in names:
        if name in lowered:
            return lowered[name]
    few = [c for c in usable if columns[c] in STRING_TYPES and 2 <= classes.get(c, 0) <= 50]
    return min(few, key=lambda c: classes[c]) if few else None


def _is_identifier(column: str) -> bool:
    lowered = column.lower()
    return lowered in {"id", "uuid", "guid", "idx", "index", "url", "link"} or lowered.endswith(("_id", "_url"))
