"""Atomic writes, the one place they are made: a file, a set of files, or a whole folder.

Whatever is written goes to a temporary sibling first and is renamed into place only once it is
complete, so a crash or an error never leaves half a file (or half a folder) and never destroys
the previous version. Every module that replaces an output people or tools read uses these.

- `atomic_file(path)`: a temporary path to write (by any writer: pandas, matplotlib ...), then swapped in;
- `write_text(path, text)`: the same for a string (an existing file keeps its permissions);
- `staged_files(near)`: several files written, then all swapped in at the end, or none;
- `staged_folder(out_dir)`: a whole folder filled beside the old one, then swapped in.

CSV files the project produces (predictions, reports, feedback) are written through `write_csv` /
`safe_row`, so no cell a spreadsheet opens runs as a formula (`=cmd|'/c calc'!A1` is written
`'=cmd|'/c calc'!A1`); numbers, and text that reads as a number (`-1`), are left alone.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Iterator


def _sibling(path: Path) -> Path:
    """An unused temporary name next to `path`, ending in path's own name (writers that look at the
    extension - pandas' compression, matplotlib's format - see the real one)."""
    return path.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{path.name}")


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write; on success it replaces `path` in one step
    (keeping an existing file's permissions), on error it is removed and `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(path)
    try:
        yield tmp
        if path.exists():
            os.chmod(tmp, path.stat().st_mode)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    """Replace `path` with `text` (UTF-8) atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


class Staging:
    """The files of one `staged_files` block: `staging(dest)` is where to write what becomes `dest`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.moves: list[tuple[Path, Path]] = []

    def __call__(self, dest: Path) -> Path:
        tmp = self.folder / f"{len(self.moves)}-{Path(dest).name}"
        self.moves.append((tmp, Path(dest)))
        return tmp


@contextlib.contextmanager
def staged_files(near: Path) -> Iterator[Staging]:
    """Write several outputs, then swap them all in at the end; on error none is touched.

        with staged_files(reports) as staged:
            staged(reports / "a.md").write_text(...)
            fig.savefig(staged(figures / "b.png"))

    The staging folder is made inside `near` (use a folder on the outputs' file system, so each
    swap is a rename).
    """
    near = Path(near)
    near.mkdir(parents=True, exist_ok=True)
    staging = Staging(Path(tempfile.mkdtemp(prefix=".staged-", dir=near)))
    try:
        yield staging
        for tmp, dest in staging.moves:
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, dest)
    finally:
        shutil.rmtree(staging.folder, ignore_errors=True)


@contextlib.contextmanager
def staged_folder(out_dir: Path, prefix: str | None = None) -> Iterator[Path]:
    """Yield an empty sibling folder to fill; on success it replaces `out_dir`, on error it is removed."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=prefix or f".{out_dir.name}-", dir=out_dir.parent))
    try:
        yield staging
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


def safe_cell(value):
    """A CSV cell a spreadsheet will not run as a formula: text starting with = + - @ or a tab /
    line break gets a leading apostrophe (OWASP's advice); other values are returned as they are."""
    if not isinstance(value, str) or not value.startswith(FORMULA_START):
        return value
    try:
        float(value)            # "-1", "+0.5": a number, not a formula
        return value
    except ValueError:
        return "'" + value


def safe_row(values) -> list:
    """`safe_cell` over one row (for csv.writer)."""
    return [safe_cell(v) for v in values]


def safe_frame(frame):
    """A copy of a DataFrame with every text cell (and column name) made formula-safe."""
    frame = frame.copy()
    frame.columns = [safe_cell(c) for c in frame.columns]
    for column in frame.columns:
        if frame[column].dtype == object or str(frame[column].dtype).startswith("str"):
            frame[column] = frame[column].map(safe_cell)
    return frame


def write_csv(frame, path: Path, **to_csv) -> None:
    """Write a DataFrame as a formula-safe CSV, atomically (index=False unless given)."""
    to_csv.setdefault("index", False)
    with atomic_file(Path(path)) as tmp:
        safe_frame(frame).to_csv(tmp, **to_csv)
