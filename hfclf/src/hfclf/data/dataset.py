"""Reading and validating the dataset (splitting: data/splitting.py).

Sources: a Hugging Face Hub dataset id (revision recorded), a local CSV / TSV / JSONL / Parquet
file, or a `datasets.save_to_disk` folder. Every problem a user can fix raises UserError naming
the file, column and counts; nothing is written until all checks pass.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from hfclf.data import processed as processed_splits
from hfclf.data.label_formats import LabelSpec, dataset_format, label_set_rows
from hfclf.data.multilabel import check_label_sets, rare_labels
from hfclf.infra.errors import UserError
from hfclf.infra.files import staged_folder

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
SPLIT_ALIASES = {"train": "train", "training": "train", "validation": "validation", "valid": "validation",
                 "val": "validation", "dev": "validation", "test": "test", "testing": "test"}
FILE_READERS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}


@dataclass
class LoadedData:
    """The raw rows by split name ("all" when the source has no splits) and where they came from."""
    frames: dict[str, pd.DataFrame]
    origin: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- reading

def is_local(source: str) -> bool:
    return Path(source).exists() or Path(source).suffix.lower() in FILE_READERS or source.startswith((".", "/"))


def load_source(source: str, revision: str | None = None, subset: str | None = None,
                columns: tuple[str, ...] = (), max_malformed_share: float = 0.0) -> LoadedData:
    """Read a dataset from a local path or the Hub, keeping any splits it already has.

    `columns` (text and label) must be in every row of a local file: rows lacking one (a JSONL
    line with other keys, a CSV line with too few fields) are refused, or dropped and listed in
    `origin["malformed_rows"]` when their share is below `max_malformed_share` (prepare.yaml)."""
    if is_local(source):
        path = Path(source)
        if not path.exists():
            raise UserError(f"dataset file '{source}' does not exist. Set data.source in "
                            "conf/data/default.yaml to an existing file or a Hub dataset id.")
        if path.is_dir():
            return LoadedData(_read_save_to_disk(path), {"type": "save_to_disk", "path": source})
        malformed: list[dict] = []
        frame = read_file(path, columns, max_malformed_share, malformed)
        origin = {"type": "file", "path": source}
        if malformed:
            origin["malformed_rows"] = malformed
        return LoadedData({"all": frame}, origin)
    return _read_hub(source, revision, subset)


def load_custom(loader, dotted: str, source: str) -> LoadedData:
    """Read `source` with the user's loader (data.loader): one DataFrame, or DataFrames by split name."""
    result = loader(source)
    frames = result if isinstance(result, dict) else {"all": result}
    bad = [name for name, frame in frames.items() if not isinstance(frame, pd.DataFrame)]
    if bad or not frames:
        raise UserError(f"data.loader={dotted!r} returned {type(result).__name__}"
                        + (f" (split {bad[0]!r} is a {type(frames[bad[0]]).__name__})" if bad else "")
                        + ": it must return a pandas DataFrame, or a dict of DataFrames by split name.")
    return LoadedData({str(name): frame for name, frame in frames.items()},
                      {"type": "custom", "loader": dotted, "path": source})


def clean_with(cleaner, dotted: str, data: LoadedData) -> LoadedData:
    """Apply the user's cleaning step (data.clean) to every loaded frame."""
    frames = {}
    for name, frame in data.frames.items():
        cleaned = cleaner(frame)
        if not isinstance(cleaned, pd.DataFrame):
            raise UserError(f"data.clean={dotted!r} returned {type(cleaned).__name__} for split {name!r}: "
                            "it must return a pandas DataFrame.")
        frames[name] = cleaned
    return LoadedData(frames, {**data.origin, "clean": dotted})


def read_file(path: Path, columns: tuple[str, ...] = (), max_malformed_share: float = 0.0,
              malformed: list | None = None) -> pd.DataFrame:
    """One local file as a DataFrame. Text files are read as text, exactly as written: every cell
    is a string and only an empty cell (or a JSON null) is missing - never 'None', 'NA', 'null' -
    and JSON numbers keep their spelling (`1.0` stays "1.0", as in a CSV). Duplicate column names
    are refused; rows lacking one of `columns` are refused, or dropped (and appended to
    `malformed`) when they are fewer than `max_malformed_share` of the rows."""
    kind = FILE_READERS.get(path.suffix.lower())
    if kind is None:
        raise UserError(f"'{path}': unsupported file type '{path.suffix}'. Use CSV, TSV, JSONL or Parquet.")
    if path.stat().st_size == 0:
        raise UserError(f"'{path}' is empty (0 bytes).")
    try:
        if kind == "parquet":
            frame = pd.read_parquet(path)
            _refuse_duplicate_columns(path, list(frame.columns), len(frame))
            return frame
        _check_utf8(path)
        if kind == "jsonl":
            frame, bad = _read_jsonl(path, columns)
        else:
            frame, bad = _read_delimited(path, "\t" if kind == "tsv" else ",", columns)
    except UserError:
        raise
    except pd.errors.EmptyDataError:
        raise UserError(f"'{path}' has no header and no rows.") from None
    except (pd.errors.ParserError, ValueError, OSError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"'{path}' could not be parsed as {kind.upper()}: {first_line}") from None
    if bad:
        rows = len(frame)
        share = len(bad) / max(rows, 1)
        seen = sorted({key for row in bad for key in row["keys"]})
        lines = ", ".join(str(row["line"]) for row in bad[:10]) + (" ..." if len(bad) > 10 else "")
        if share >= max_malformed_share:
            reasons = ", ".join(sorted({row["reason"] for row in bad}))
            raise UserError(f"'{path}': {len(bad)} of {rows} rows lack the configured column(s) "
                            f"{', '.join(repr(c) for c in columns)} or are malformed ({reasons}; lines {lines}; those rows have: "
                            f"{', '.join(seen) or 'nothing'}). Fix the file, set data.text_column / "
                            "data.label_column, or raise prepare.max_malformed_share to drop such rows.")
        log.warning("'%s': dropped %d of %d rows lacking %s (lines %s), below prepare.max_malformed_share=%s",
                    path, len(bad), rows, "/".join(columns), lines, max_malformed_share)
        frame = frame.drop(index=[row["index"] for row in bad]).reset_index(drop=True)
        if malformed is not None:
            malformed.extend({k: v for k, v in row.items() if k != "index"} for row in bad)
    return frame


def _refuse_duplicate_columns(path: Path, names: list, rows: int) -> None:
    duplicated = sorted({str(n) for n in names if names.count(n) > 1})
    if duplicated:
        raise UserError(f"'{path}' has duplicate column name(s) {', '.join(repr(d) for d in duplicated)} "
                        f"(columns: {', '.join(map(str, names))}; {rows} rows): rename them so each is unique.")


def _read_delimited(path: Path, sep: str, columns: tuple[str, ...]) -> tuple[pd.DataFrame, list[dict]]:
    """CSV/TSV as strings exactly as written; only an empty cell is missing."""
    import csv

    with path.open("r", encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, delimiter=sep)
        header = next(reader, None)
        if header is None:
            raise pd.errors.EmptyDataError("no header")
        widths = [(reader.line_num, len(row)) for row in reader if row]
    _refuse_duplicate_columns(path, header, len(widths))
    frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[""],
                        encoding="utf-8-sig")
    bad = []
    wanted = [header.index(c) for c in columns if c in header]
    for index, (line, width) in enumerate(widths):
        if wanted and width <= max(wanted):
            bad.append({"line": line, "index": index, "keys": header[:width], "reason": "too few fields"})
    if len(frame) != len(widths):   # blank lines or embedded line breaks: no reliable row mapping
        bad = []
    return frame, bad


def _read_jsonl(path: Path, columns: tuple[str, ...]) -> tuple[pd.DataFrame, list[dict]]:
    """JSON Lines with numbers kept as written (strings) and duplicate keys refused."""
    def pairs(items):
        keys = [k for k, _ in items]
        if len(set(keys)) < len(keys):
            raise _DuplicateKeys(sorted({k for k in keys if keys.count(k) > 1}), keys)
        return dict(items)

    records, bad = [], []
    with path.open("r", encoding="utf-8-sig") as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line, object_pairs_hook=pairs, parse_int=JsonNumber, parse_float=JsonNumber,
                                    parse_constant=JsonNumber)
            except _DuplicateKeys as dup:   # which value counts is ambiguous: the row is malformed
                bad.append({"line": line_no, "index": len(records), "keys": dup.seen,
                            "reason": f"duplicate key(s) {', '.join(dup.keys)}"})
                records.append({})
                continue
            except json.JSONDecodeError as err:
                raise UserError(f"'{path}' could not be parsed as JSONL: line {line_no}: {err.msg}") from None
            if not isinstance(record, dict):
                raise UserError(f"'{path}' line {line_no} is not a JSON object.")
            if any(c not in record for c in columns):
                bad.append({"line": line_no, "index": len(records), "keys": list(record), "reason": "missing keys"})
            records.append(record)
    if not records:
        raise pd.errors.EmptyDataError("no rows")
    names = list(dict.fromkeys(key for record in records for key in record))
    # object columns: pandas' string dtype would turn JsonNumber back into plain str
    frame = pd.DataFrame({name: pd.Series([r.get(name) for r in records], dtype=object) for name in names},
                         index=range(len(records)))
    return frame, bad


class JsonNumber(str):
    """A JSON number kept as written ("1.0" stays "1.0"); still known to be a number (mixed-type check)."""


class _DuplicateKeys(ValueError):
    def __init__(self, keys, seen):
        super().__init__(keys)
        self.keys, self.seen = keys, seen


def _check_utf8(path: Path) -> None:
    raw = path.read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise UserError(f"'{path}' is not valid UTF-8: undecodable byte 0x{raw[err.start]:02x} on line {line}. "
                        "Re-save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`).") from None


def _read_save_to_disk(folder: Path) -> dict[str, pd.DataFrame]:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(folder))
    except (FileNotFoundError, ValueError) as err:
        raise UserError(f"'{folder}' is not a datasets.save_to_disk folder: {err}") from None
    if isinstance(loaded, datasets.DatasetDict):
        return {name: split.to_pandas() for name, split in loaded.items()}
    return {"all": loaded.to_pandas()}


def _read_hub(source: str, revision: str | None, subset: str | None) -> LoadedData:
    from huggingface_hub import HfApi

    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}
    hint = ("Pass a local file instead: set data.source in conf/data/default.yaml (or run "
            "`hfclf prepare data.source=path/to/data.csv`), or, from the template, "
            "`make example DATA=path/to/data.csv`.")
    if offline:
        raise UserError(f"dataset '{source}' is a Hugging Face Hub id, but HF_HUB_OFFLINE is set. {hint}")
    try:
        info = HfApi().dataset_info(source, revision=revision, timeout=10)
    except Exception as err:  # connection, DNS, 401/404 all mean the same to the user here
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise UserError(f"dataset '{source}' could not be read from the Hugging Face Hub ({reason}). "
                        f"Check the id and your connection. {hint}") from None
    import datasets

    loaded = datasets.load_dataset(source, subset, revision=info.sha)
    frames = {name: split.to_pandas() for name, split in loaded.items()}
    return LoadedData(frames, {"type": "hub", "id": source, "revision": info.sha, "subset": subset})


# --------------------------------------------------------------------------- validation

@dataclass
class CleanReport:
    dropped_empty_text: int = 0
    dropped_missing_label: int = 0
    rows_in: int = 0
    dropped_rare_labels: dict = field(default_factory=dict)   # prepare.rare_labels=drop: label -> rows
    dropped_without_label: int = 0   # multi_label: rows whose every label was a dropped rare one


def validate(data: LoadedData, text_column: str, label_column: str, source: str, min_examples_per_class: int,
             labels: LabelSpec | None = None,
             rare_labels: str = "refuse") -> tuple[dict[str, pd.DataFrame], CleanReport]:
    """Check columns and labels, drop empty texts; return frames with columns text, label + extras.

    `labels` says how the raw data holds them (task and, for multi_label, the format: data/multilabel.py);
    a multi-label row's `label` is then its canonical label set. `rare_labels` (prepare.rare_labels):
    a class or label with fewer than `min_examples_per_class` rows is refused, or dropped."""
    labels = labels or LabelSpec()
    report = CleanReport()
    frames: dict[str, pd.DataFrame] = {}
    unknown = set(data.frames) - set(SPLIT_ALIASES) - {"all"}
    if unknown and len(data.frames) > 1:
        raise UserError(f"'{source}' has splits {sorted(data.frames)}; expected names among "
                        f"{sorted(SPLIT_ALIASES)}. Save the data as one file to let prepare split it.")
    fmt = dataset_format(data.frames, text_column, label_column, labels) if labels.multi else None
    for name, frame in data.frames.items():
        missing = [c for c in (text_column, *labels.label_keys(label_column)) if c not in frame.columns]
        if missing:
            setting = ("data.label_columns" if labels.multi and labels.columns
                       else "data.text_column / data.label_column")
            raise UserError(f"'{source}' (split '{name}') has no column {', '.join(repr(m) for m in missing)}. "
                            f"Its columns are: {', '.join(map(str, frame.columns))}. Set {setting} in "
                            "conf/data/default.yaml.")
        report.rows_in += len(frame)
        if labels.multi:
            frame, empty = label_set_rows(frame, text_column, label_column, labels, fmt, source, name,
                                          _first_data_line(data, source, name))
            report.dropped_empty_text += empty
        else:
            frame = _class_rows(frame, text_column, label_column, report)
        frame["text"] = frame["text"].map(lambda v: str.__str__(v) if isinstance(v, str) else str(v))
        for column in frame.columns.drop(["text", "label"], errors="ignore"):   # JSON numbers: plain text
            if frame[column].map(lambda v: isinstance(v, JsonNumber)).any():
                frame[column] = frame[column].map(lambda v: str.__str__(v) if isinstance(v, JsonNumber) else v)
        frames[SPLIT_ALIASES.get(name, name)] = frame.reset_index(drop=True)
    if report.rows_in == 0:
        raise UserError(f"'{source}' has a header but no rows.")
    if not labels.multi:
        _normalise_labels(frames, source, label_column)
    if report.dropped_empty_text:
        log.warning("dropped %d rows with an empty or missing '%s'", report.dropped_empty_text, text_column)
    if report.dropped_missing_label:
        log.warning("dropped %d rows with a missing '%s'", report.dropped_missing_label, label_column)
    kept = sum(len(f) for f in frames.values())
    if kept == 0:
        raise UserError(f"'{source}': all {report.rows_in} rows have an empty '{text_column}' or '{label_column}'.")
    where = (f"the label columns {', '.join(repr(c) for c in labels.columns)}" if labels.multi and labels.columns
             else f"column '{label_column}'" if labels.multi else f"'{label_column}'")
    needs_split = "all" in frames or "validation" not in frames or "test" not in frames
    minimum = min_examples_per_class if needs_split else 0
    if labels.multi:
        frames, report.dropped_rare_labels, report.dropped_without_label = check_label_sets(
            frames, source, where, minimum, rare_labels)
        return frames, report
    return _check_classes(frames, report, source, where, minimum, rare_labels), report


def _class_rows(frame: pd.DataFrame, text_column: str, label_column: str, report: CleanReport) -> pd.DataFrame:
    """single_label: the rows with a text and a label, as columns text, label + extras (counted in `report`)."""
    frame = frame.rename(columns={text_column: "text", label_column: "label"})
    text = frame["text"]
    empty = text.isna() | text.astype(str).str.strip().eq("")
    no_label = frame["label"].isna() | frame["label"].astype(str).str.strip().eq("")
    report.dropped_empty_text += int(empty.sum())
    report.dropped_missing_label += int((no_label & ~empty).sum())
    return frame[~empty & ~no_label].copy()


def _first_data_line(data: LoadedData, source: str, name: str) -> int | None:
    """The file line of data row 1 when data rows map to file lines: a CSV/TSV read whole (no malformed
    lines dropped, no data.clean step) has its header on line 1. None otherwise (row numbers only)."""
    plain = (data.origin.get("type") == "file" and Path(source).suffix.lower() in (".csv", ".tsv")
             and not data.origin.get("malformed_rows") and "clean" not in data.origin and name == "all")
    return 2 if plain else None


def _check_classes(frames: dict[str, pd.DataFrame], report: CleanReport, source: str, where: str,
                   min_examples: int, rare_policy: str) -> dict[str, pd.DataFrame]:
    """single_label: at least two classes; classes too rare to split refused or dropped (prepare.rare_labels)."""
    counts = pd.concat([f["label"] for f in frames.values()]).value_counts()
    if len(counts) < 2:
        raise UserError(f"'{source}': column {where} has a single class ({counts.index[0]!r}, "
                        f"{counts.iloc[0]} rows); a classifier needs at least two.")
    rare = rare_labels(counts, min_examples, rare_policy, source, where)
    if rare:
        frames = {name: f[~f["label"].isin(rare)].reset_index(drop=True) for name, f in frames.items()}
        report.dropped_rare_labels = rare
        log.warning("dropped %d rows of %d class(es) with fewer than %d rows (prepare.rare_labels=drop): %s",
                    sum(rare.values()), len(rare), min_examples, ", ".join(f"{k} ({v})" for k, v in rare.items()))
        left = pd.concat([f["label"] for f in frames.values()]).nunique()
        if left < 2:
            raise UserError(f"'{source}': after dropping the classes with fewer than {min_examples} rows "
                            f"(prepare.rare_labels=drop), {left} class is left; a classifier needs at least two.")
    return frames


def _normalise_labels(frames: dict[str, pd.DataFrame], source: str, label_column: str) -> None:
    """Labels become strings; a column mixing numbers and text is refused, not silently cast."""
    values = pd.concat([f["label"] for f in frames.values()])
    kinds = values.map(lambda v: "number" if isinstance(v, (int, float, np.integer, np.floating, JsonNumber))
                       and not isinstance(v, (bool, np.bool_)) else "str" if isinstance(v, str)
                       else type(v).__name__).value_counts()
    if len(kinds) > 1:
        described = ", ".join(f"{n} {k}" for k, n in kinds.items())
        raise UserError(f"'{source}': column '{label_column}' mixes label types ({described}). "
                        "Make every label the same type, e.g. all text.")
    for frame in frames.values():   # as written: "1" and "1.0" stay two labels, in every format
        frame["label"] = frame["label"].map(lambda v: ("true" if v else "false") if isinstance(v, (bool, np.bool_))
                                            else str.__str__(v) if isinstance(v, str) else str(v))


def _variant_key(label: str) -> str:
    key = label.strip().casefold()
    try:
        number = float(key)
    except ValueError:
        return key
    return repr(number) if np.isfinite(number) else key


def label_variants(labels) -> list[list[str]]:
    """Groups of distinct labels that differ only by numeric formatting (1 / 1.0), case or
    surrounding whitespace - probably one class written several ways."""
    groups: dict[str, set[str]] = {}
    for label in set(map(str, labels)):
        groups.setdefault(_variant_key(label), set()).add(label)
    return sorted(sorted(g) for g in groups.values() if len(g) > 1)


# --------------------------------------------------------------------------- settings

@dataclass
class PrepareSettings:
    """conf/prepare.yaml's `prepare` section: its types are checked when the config is composed."""
    split: str = "group"
    validation_size: float = 0.1
    test_size: float = 0.1
    min_examples_per_class: int = 3
    rare_labels: str = "refuse"      # refuse | drop: a class (multi_label: a label) under min_examples_per_class
    token_length_sample: int = 20000
    max_malformed_share: float = 0.01


# --------------------------------------------------------------------------- writing

def fingerprint(splits: dict[str, pd.DataFrame]) -> str:
    """A short content hash of the processed splits (order-sensitive), recorded in MLflow and the card."""
    digest = hashlib.sha256()
    for name in SPLITS:
        frame = splits[name][["text", "label"]]
        digest.update(name.encode())
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def write_splits(splits: dict[str, pd.DataFrame], labels: list[str], out_dir: Path, extra: dict) -> None:
    """Write the splits and labels.json into a temporary folder, then swap it in whole."""
    with staged_folder(out_dir, prefix=".prepare-") as staging:
        for name, frame in splits.items():
            frame.to_parquet(staging / f"{name}.parquet", index=False)
        (staging / "labels.json").write_text(json.dumps({"labels": labels, **extra}, indent=2), encoding="utf-8")


def read_split(processed: Path, name: str) -> pd.DataFrame:
    """Split `name` of data/processed/ (the train stage reads its columns without pandas: data/processed.py)."""
    return pd.read_parquet(processed_splits.split_path(processed, name))


read_labels = processed_splits.read_labels
