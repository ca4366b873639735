"""Judging Hub datasets as candidates for a text classifier, from metadata alone.

Everything comes from what the Hub says about a dataset without running it: the card's YAML
(`license`, `language`, `size_categories`, `task_categories`, `configs`, `dataset_info` with its
features and split sizes), the repo's tags and file list, and - when the card lists no features -
the first kilobytes of one CSV / TSV / JSONL data file. No dataset is downloaded and the Dataset
Viewer API is not needed. What cannot be known is shown as unknown and flagged, never guessed.
"""
from __future__ import annotations

import csv
import io
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath

from hfclf.research import hub
from hfclf.infra.errors import UserError
from hfclf.infra.render import md_table

log = logging.getLogger(__name__)

PEEKABLE = {".csv": ",", ".tsv": "\t", ".jsonl": None, ".json": None}
SPLIT_WORDS = {"train": "train", "training": "train", "validation": "validation", "valid": "validation",
               "val": "validation", "dev": "validation", "test": "test", "testing": "test"}
STRING_TYPES = {"string", "large_string"}
LABEL_TYPES = {"string", "large_string", "int64", "int32", "int16", "int8", "bool", "?"}


@dataclass
class Candidate:
    """What a user needs to decide on a dataset, plus the flags that say what to check first."""
    id: str
    downloads: int | None = None
    likes: int | None = None
    license: str | None = None
    size_category: str | None = None
    last_modified: str | None = None
    languages: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    gated: bool = False
    sha: str | None = None
    subsets: list[str] = field(default_factory=list)
    subset: str | None = None
    columns: dict[str, str] = field(default_factory=dict)   # name -> type ("?" when only the name is known)
    columns_from: str | None = None                          # "the card", "the first N rows of <file>"; None = unknown
    classes: dict[str, int] = field(default_factory=dict)    # column -> number of classes (class_label) or distinct values seen
    rows_seen: int | None = None                             # rows read from a file's head (distinct counts come from them)
    splits: dict[str, int | None] = field(default_factory=dict)   # split -> rows (None: unknown)
    text_column: str | None = None
    label_column: str | None = None
    flags: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int | None:
        counts = list(self.splits.values())
        return sum(counts) if counts and all(n is not None for n in counts) else None

    def to_dict(self) -> dict:
        return {**asdict(self), "rows": self.rows}


# --------------------------------------------------------------------------- from the Hub's metadata

def describe(info, settings, subset: str | None = None, head: tuple[str, bytes] | None = None) -> Candidate:
    """A Candidate from a DatasetInfo (list or single-dataset answer) and, optionally, a file's head."""
    card = info.card_data.to_dict() if info.card_data is not None else {}
    tags = info.tags or []
    license_ = _first(card.get("license")) or _first(hub.tags_with(tags, "license"))
    cand = Candidate(
        id=info.id, downloads=info.downloads, likes=info.likes, license=license_,
        size_category=_first(card.get("size_categories")) or _first(hub.tags_with(tags, "size_categories")),
        last_modified=info.last_modified.date().isoformat() if info.last_modified else None,
        languages=_as_list(card.get("language")) or hub.tags_with(tags, "language"),
        tasks=_as_list(card.get("task_categories")) or hub.tags_with(tags, "task_categories"),
        gated=bool(info.gated), sha=info.sha, subsets=subset_names(card),
    )
    cand.subset = subset if subset is not None else default_subset(cand.subsets)
    # several subsets and none chosen: describe the first, and say so (the subset flag asks for a choice)
    shown = cand.subset or (cand.subsets[0] if cand.subsets and "default" not in cand.subsets else None)
    entry = _dataset_info_entry(card, shown)
    if entry and entry.get("features"):
        cand.columns, cand.classes = _features(entry["features"])
        cand.columns_from = "the card" + (f", subset {shown}" if shown and shown != cand.subset else "")
    if entry and entry.get("splits"):
        cand.splits = {s["name"]: s.get("num_examples") for s in entry["splits"] if "name" in s}
    if not cand.splits:
        cand.splits = _splits_from_configs(card, shown) or _splits_from_files(data_files(info))
    if not cand.columns and head is not None:
        filename, data = head
        cand.columns, cand.classes, cand.rows_seen = columns_from_head(filename, data)
        cand.columns_from = f"the first {cand.rows_seen} rows of {filename}" if cand.columns else None
    cand.text_column = pick_text(cand.columns, settings.text_names)
    cand.label_column = pick_label(cand.columns, cand.classes, settings.label_names, cand.text_column)
    cand.flags = flags(cand)
    return cand


def subset_names(card: dict) -> list[str]:
    names = [c.get("config_name") for c in _as_list(card.get("configs")) if isinstance(c, dict)]
    if not names:
        names = [d.get("config_name") for d in _as_list(card.get("dataset_info")) if isinstance(d, dict)]
    return [n for n in names if n]


def default_subset(subsets: list[str]) -> str | None:
    """The subset `datasets.load_dataset(id)` picks without a name: 'default', or the only one."""
    if "default" in subsets or not subsets:
        return None
    return subsets[0] if len(subsets) == 1 else None


def _dataset_info_entry(card: dict, subset: str | None) -> dict | None:
    entries = [d for d in _as_list(card.get("dataset_info")) if isinstance(d, dict)]
    if not entries:
        return None
    if len(entries) == 1 and (subset is None or entries[0].get("config_name") in (None, subset)):
        return entries[0]
    wanted = subset or "default"
    return next((d for d in entries if d.get("config_name", "default") == wanted), None)


def _features(features: list) -> tuple[dict[str, str], dict[str, int]]:
    columns, classes = {}, {}
    for feature in features:
        if not isinstance(feature, dict) or "name" not in feature:
            continue
        name = str(feature["name"])
        dtype = feature.get("dtype")
        if isinstance(dtype, dict) and "class_label" in dtype:
            names = (dtype["class_label"] or {}).get("names") or {}
            columns[name] = "class_label"
            classes[name] = len(names)
        elif isinstance(dtype, str):
            columns[name] = dtype
        else:
            kind = next((k for k in ("sequence", "list", "struct") if k in feature), "nested")
            columns[name] = kind
    return columns, classes


def _splits_from_configs(card: dict, subset: str | None) -> dict[str, None]:
    for config in _as_list(card.get("configs")):
        if isinstance(config, dict) and config.get("config_name", "default") == (subset or "default"):
            files = config.get("data_files")
            if isinstance(files, list):
                return {str(f["split"]): None for f in files if isinstance(f, dict) and "split" in f}
    return {}


def _splits_from_files(files: list[str]) -> dict[str, None]:
    found = {}
    for name in files:
        for word in PurePosixPath(name.lower()).stem.replace("-", "_").replace(".", "_").split("_"):
            if word in SPLIT_WORDS:
                found[SPLIT_WORDS[word]] = None
    return found


def data_files(info) -> list[str]:
    """The repo's data files (by extension), README and dotfiles left out; [] when files are unknown."""
    names = [s.rfilename for s in (info.siblings or [])]
    return sorted(n for n in names if not PurePosixPath(n).name.startswith(".")
                  and PurePosixPath(n).suffix.lower() in {*PEEKABLE, ".parquet", ".arrow", ".txt", ".zip", ".gz"}
                  and PurePosixPath(n).name.lower() != "readme.md")


def file_to_peek(info) -> str | None:
    """A CSV / TSV / JSONL data file whose first lines tell the columns; training files first."""
    files = [f for f in data_files(info) if PurePosixPath(f).suffix.lower() in PEEKABLE]
    files.sort(key=lambda f: ("train" not in f.lower(), f))
    return files[0] if files else None


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


# --------------------------------------------------------------------------- which columns, which flags

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


def flags(cand: Candidate) -> list[str]:
    found = []
    if not cand.license or cand.license.lower() in {"unknown", "none"}:
        found.append("no licence")
    elif cand.license.lower() == "other":
        found.append("custom licence: read the card")
    if cand.gated:
        found.append("gated: accept its terms first")
    if not cand.columns:
        found.append("columns unknown")
    else:
        if cand.text_column is None:
            found.append("no text column")
        if cand.label_column is None:
            found.append("no label column")
    if len(cand.subsets) > 1 and cand.subset is None:
        found.append(f"{len(cand.subsets)} subsets: pick one")
    return found


# --------------------------------------------------------------------------- search, end to end

def find(api, query: str, task: str | None, sort: str, limit: int, settings) -> list[Candidate]:
    """Search, then describe each hit; datasets whose card lists no features get one more look
    (their files: the listing never includes them) to read a data file's header."""
    infos = hub.search(api, query, task, sort, limit)

    def one(info) -> Candidate:
        cand = describe(info, settings)
        if cand.columns:
            return cand
        try:
            full = hub.dataset_info(api, info.id, timeout=settings.timeout_seconds)
            peek = file_to_peek(full)
            head = (peek, hub.read_head(info.id, full.sha, peek, settings.peek_bytes,
                                        settings.timeout_seconds)) if peek else None
        except UserError as err:  # one unreadable candidate stays listed, with its columns unknown
            log.warning("%s: columns not read (%s)", info.id, err)
            return cand
        described = describe(full, settings, head=head)
        described.downloads = described.downloads if described.downloads is not None else info.downloads
        return described

    with ThreadPoolExecutor(max_workers=max(1, int(settings.workers))) as pool:
        return list(pool.map(one, infos))


# --------------------------------------------------------------------------- reports

TABLE_HEADER = ["#", "dataset", "downloads", "likes", "licence", "size", "rows", "splits", "languages",
                "modified", "text / label", "flags"]


def table_rows(candidates: list[Candidate]) -> list[list]:
    rows = []
    for i, c in enumerate(candidates, 1):
        columns = f"{c.text_column or '?'} / {c.label_column or '?'}"
        if c.label_column and c.classes.get(c.label_column):
            exact = c.columns.get(c.label_column) == "class_label"
            columns += f" ({'' if exact else '~'}{c.classes[c.label_column]} classes)"
        rows.append([i, c.id, _count(c.downloads), _count(c.likes), c.license or "-", c.size_category or "-",
                     _count(c.rows), ", ".join(c.splits) or "-", ", ".join(c.languages[:4]) or "-",
                     c.last_modified or "-", columns, "; ".join(c.flags) or "ok"])
    return rows


def markdown(candidates: list[Candidate], query: str, task: str | None, sort: str, endpoint: str) -> str:
    lines = [f"# Dataset candidates for \"{query}\"", "",
             f"Searched {endpoint} for datasets matching \"{query}\""
             f"{f', task `{task}`' if task else ', any task'}, most {sort.replace('_', ' ')} first. "
             "Everything below comes from the dataset cards, tags and file headers - nothing was downloaded. "
             "**Flags** say what to check before you commit: a missing licence, columns the card does "
             "not describe, no plausible text or label column.", ""]
    if not candidates:
        lines += ["No dataset matched. Try fewer or other words (the search matches dataset ids), or drop TASK."]
        return "\n".join(lines) + "\n"
    lines += [md_table(TABLE_HEADER, table_rows(candidates)), ""]
    for i, c in enumerate(candidates, 1):
        lines += [f"## {i}. {c.id}", ""]
        if c.columns:
            described = ", ".join(f"`{n}` ({t}{_values(c, n)})" for n, t in c.columns.items())
            lines.append(f"- columns (from {c.columns_from}): {described}")
            lines.append(f"- suggested: text `{c.text_column or '?'}`, label `{c.label_column or '?'}`")
        else:
            lines.append("- columns: unknown - the card has no `dataset_info` and no CSV / JSONL file was readable")
        splits = ", ".join(f"{s} ({_count(n)})" if n is not None else s for s, n in c.splits.items())
        lines.append(f"- splits: {splits or 'unknown'}")
        lines.append(f"- tasks: {', '.join(c.tasks) or 'none tagged'}; languages: {', '.join(c.languages) or 'unknown'}")
        if c.subsets:
            lines.append(f"- subsets: {', '.join(c.subsets)}")
        lines.append(f"- flags: {'; '.join(c.flags) or 'none'}")
        lines.append(f"- use it: `{use_command(c)}`")
        lines.append("")
    return "\n".join(lines)


def use_command(c: Candidate) -> str:
    parts = [f"make use-dataset ID={c.id}", f"LABEL={_shell(c.label_column) if c.label_column else '<column>'}"]
    if c.text_column:
        parts.append(f"TEXT={_shell(c.text_column)}")
    if len(c.subsets) > 1:
        parts.append(f"SUBSET={_shell(c.subset) if c.subset else '<' + '|'.join(c.subsets[:4]) + '>'}")
    return " ".join(parts)


def _values(c: Candidate, column: str) -> str:
    if column not in c.classes:
        return ""
    if c.columns[column] == "class_label":
        return f", {c.classes[column]} classes"
    return f", {c.classes[column]} distinct"


def _shell(value: str) -> str:
    return value if value.replace("_", "").replace("-", "").replace(".", "").isalnum() else f"'{value}'"


def _count(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def _first(value) -> str | None:
    values = _as_list(value)
    return str(values[0]) if values else None


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]
