"""Judging Hub datasets as candidates for a text classifier, from metadata alone.

Everything comes from what the Hub says about a dataset without running it: the card's YAML
(`license`, `language`, `size_categories`, `task_categories`, `configs`, `dataset_info` with its
features and split sizes), the repo's tags and file list, and - when the card lists no features -
the first kilobytes of one CSV / TSV / JSONL data file. No dataset is downloaded and the Dataset
Viewer API is not needed. What cannot be known is shown as unknown and flagged, never guessed.
Which columns hold text and label: columns.py; the shortlist people read: shortlist.py.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath

from hfclf.infra.errors import UserError
from hfclf.research import hub
from hfclf.research.columns import PEEKABLE, columns_from_head, pick_label, pick_text

log = logging.getLogger(__name__)

SPLIT_WORDS = {"train": "train", "training": "train", "validation": "validation", "valid": "validation",
               "val": "validation", "dev": "validation", "test": "test", "testing": "test"}


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


# --------------------------------------------------------------------------- what to check first

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


def _first(value) -> str | None:
    values = _as_list(value)
    return str(values[0]) if values else None


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]
