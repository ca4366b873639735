"""The answers' side of a bake (pre_gen): reject bad answers before cookiecutter writes any file.

This module owns what the hooks need to judge the answers: BakeError (a bad answer, named by its
variable) and `hook`, which turns one into `ERROR: <variable>: <problem>` and exit status 1; the
checks that need no file system (validate_answers: names, characters, required answers); the local
dataset an answer may point to (resolve_local) and its columns read with the standard library only
(columns_of: CSV/TSV/JSONL/save_to_disk, Parquet when pyarrow is importable); render mode
(render_only), in which `make update` re-renders without validating against the file system; and
the note that hands a resolved local dataset to post_gen (LOCAL_DATASET_NOTE).
"""
from __future__ import annotations

import csv
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

RENDER_MODE_ENV = "HFCLF_BAKE_MODE"       # "render": only render (set by `make update`)
PROJECT_DIR_ENV = "HFCLF_PROJECT_DIR"     # the project being updated (set by `make update`)
LOCAL_DATASET_NOTE = ".local-dataset"     # pre_gen -> post_gen: the resolved local dataset
SLUG_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
PACKAGE_RE = re.compile(r"^[a-z_][a-z0-9_]*$")
HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$|^[A-Za-z0-9][\w.-]*$")
HUB_REPO_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
DATA_SUFFIXES = {".csv", ".tsv", ".jsonl", ".json", ".parquet"}
RESERVED_PACKAGES = {"test", "tests", "src", "conf", "data", "models", "datasets", "transformers",
                     "torch", "mlflow", "hydra", "dvc", "gradio", "hfclf"}
# Answers rendered into conf/ YAML as JSON strings (`{{ cookiecutter.x | tojson }}`): any printable
# text is data there - quotes and backslashes included; only line breaks / control characters are refused.
QUOTED_IN_YAML = ("dataset", "text_column", "label_column", "base_model", "hub_repo_id", "license")
FREE_TEXT = ("project_name", "description", "author_name")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


class BakeError(Exception):
    """A bad answer: names the variable and says what is wrong and how to fix it."""

    def __init__(self, variable: str, problem: str):
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


def hook(step: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Run a hook step; a BakeError becomes `ERROR: <variable>: <problem>` and exit status 1."""
    try:
        step(*args, **kwargs)
    except BakeError as err:
        sys.stderr.write(f"\nERROR: {err}\n\n")
        sys.exit(1)


def render_only() -> bool:
    """True while `make update` (or a bare `cruft update` / `cruft diff`) re-renders the template."""
    if os.environ.get(RENDER_MODE_ENV, "").strip().lower() == "render":
        return True
    try:  # Linux: the process running the hook is cruft itself
        argv = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return False
    names = [Path(arg).name for arg in argv[:3]]
    return "cruft" in names and any(arg in ("update", "diff") for arg in argv[1:4])


def text(answers: Mapping[str, Any], key: str) -> str:
    value = answers.get(key, "")
    return value.strip() if isinstance(value, str) else str(value)


# ---------------------------------------------------------------------------------------- pre_gen

def pre_gen(answers: Mapping[str, Any], project_dir: str | Path = ".") -> None:
    """Reject bad answers before any file is written; note a local dataset for post_gen."""
    validate_answers(answers)
    if render_only():
        return
    local = resolve_local(text(answers, "dataset"), Path(project_dir))
    if local is None:
        return
    (Path(project_dir) / LOCAL_DATASET_NOTE).write_text(str(local), encoding="utf-8")
    columns = columns_of(local)
    if columns is None:
        print(f"note: could not read the columns of '{local}' here (install pyarrow); "
              "`make prepare` will check them.")
        return
    for variable in ("text_column", "label_column"):
        if text(answers, variable) not in columns:
            raise BakeError(variable, f"column '{text(answers, variable)}' is not in '{local}'. "
                                      f"Its columns are: {', '.join(columns)}.")


def validate_answers(answers: Mapping[str, Any]) -> None:
    """The checks that need no file system: names, characters, required answers."""
    for variable in FREE_TEXT + QUOTED_IN_YAML:
        value = answers.get(variable, "")
        if isinstance(value, str) and CONTROL_RE.search(value):
            raise BakeError(variable, f"{value!r} holds a line break or control character; "
                                      "answers must be one line.")
    name = text(answers, "project_name")
    if "\\" in name or '"""' in name:
        raise BakeError("project_name", f"{name!r} holds a backslash or '\"\"\"' (it titles a Python "
                                        "docstring); leave them out.")
    slug = text(answers, "project_slug")
    if not SLUG_RE.match(slug):
        raise BakeError("project_slug", f"'{slug}' is not a valid slug: use lowercase letters, digits "
                                        "and single dashes, starting with a letter "
                                        "(e.g. support-ticket-classifier).")
    package = text(answers, "package_name")
    if not PACKAGE_RE.match(package) or package in RESERVED_PACKAGES:
        raise BakeError("package_name", f"'{package}' is not a valid package name: use a lowercase "
                                        "Python identifier (letters, digits, underscores) that does "
                                        "not shadow a library "
                                        f"({', '.join(sorted(RESERVED_PACKAGES))}).")
    for variable in ("text_column", "label_column", "dataset", "base_model"):
        if not text(answers, variable):
            raise BakeError(variable, "must not be empty.")
    if text(answers, "text_column") == text(answers, "label_column"):
        raise BakeError("label_column", f"'{text(answers, 'label_column')}' is also the text_column; "
                                        "they must differ.")
    task = text(answers, "task") or "single_label"   # a checkout's answers from before the choice existed
    if task not in ("single_label", "multi_label"):  # data/multilabel.TASKS (this module runs in the hook)
        raise BakeError("task", f"'{task}' is not a task: use single_label or multi_label.")
    hub = text(answers, "hub_repo_id")
    if hub and not HUB_REPO_RE.match(hub):
        raise BakeError("hub_repo_id", f"'{hub}' is not a Hub repo id; use owner/name or leave it empty.")


def looks_local(path_text: str) -> bool:
    path = Path(os.path.expanduser(path_text))
    return (path.suffix.lower() in DATA_SUFFIXES or path_text.startswith((".", "/", "~"))
            or not HUB_ID_RE.match(path_text))


def resolve_local(path_text: str, project_dir: Path = Path(".")) -> Path | None:
    """Where a local dataset answer points to, or None when it reads as a Hub id.

    Hooks run inside the new project folder, so a relative path is tried against the folder
    cookiecutter was started from ($PWD) and the output folder.
    """
    path = Path(os.path.expanduser(path_text))
    project_dir = Path(project_dir).resolve()
    candidates = [path] if path.is_absolute() else [
        Path(os.environ.get("PWD", os.getcwd())) / path, project_dir.parent / path]
    for candidate in candidates:
        if candidate.exists():
            return candidate.resolve()
    if looks_local(path_text):
        tried = ", ".join(str(c) for c in candidates)
        raise BakeError("dataset", f"local dataset '{path_text}' does not exist (looked at {tried}). "
                                   "Pass an existing CSV/TSV/JSONL/Parquet file or save_to_disk folder, "
                                   "or a Hugging Face dataset id such as owner/name.")
    return None


def columns_of(path: Path) -> list[str] | None:
    """The column names of a local dataset, or None when they cannot be read here."""
    if path.is_dir():
        return save_to_disk_columns(path)
    if not os.access(path, os.R_OK):
        raise BakeError("dataset", f"'{path}' is not readable (check its permissions).")
    suffix = path.suffix.lower()
    try:
        with path.open("r", encoding="utf-8-sig", newline="") as handle:
            if suffix in {".csv", ".tsv"}:
                header = next(csv.reader(handle, delimiter="\t" if suffix == ".tsv" else ","), None)
                if not header:
                    raise BakeError("dataset", f"'{path}' is empty: it has no header row.")
                return [h.strip() for h in header]
            if suffix in {".jsonl", ".json"}:
                return json_columns(path, handle.readline().strip())
    except UnicodeDecodeError as err:
        raise BakeError("dataset", f"'{path}' is not UTF-8 text (byte {err.start}: {err.reason}); "
                                   "re-save it as UTF-8.") from None
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq  # lazily: the interpreter running cookiecutter may lack it
        except ImportError:
            return None
        try:
            return list(pq.read_schema(path).names)
        except Exception as err:  # pyarrow raises several types for a damaged file
            raise BakeError("dataset", f"'{path}' is not a readable Parquet file ({err}).") from None
    raise BakeError("dataset", f"'{path}' has an unsupported type '{suffix}'; use one of "
                               f"{', '.join(sorted(DATA_SUFFIXES))} or a datasets.save_to_disk folder.")


def json_columns(path: Path, first: str) -> list[str]:
    if not first:
        raise BakeError("dataset", f"'{path}' is empty.")
    try:
        record = json.loads(first)
    except json.JSONDecodeError as err:
        raise BakeError("dataset", f"'{path}' line 1 is not JSON ({err.msg}); expected one JSON "
                                   "object per line.") from None
    if isinstance(record, list) and record and isinstance(record[0], dict):
        return list(record[0])
    if not isinstance(record, dict):
        raise BakeError("dataset", f"'{path}' line 1 is not a JSON object.")
    return list(record)


def save_to_disk_columns(folder: Path) -> list[str]:
    infos = [folder / "dataset_info.json"] + sorted(folder.glob("*/dataset_info.json"))
    infos = [i for i in infos if i.exists()]
    if not infos:
        raise BakeError("dataset", f"folder '{folder}' is not a datasets.save_to_disk folder "
                                   "(no dataset_info.json in it or in its split folders).")
    features = json.loads(infos[0].read_text(encoding="utf-8")).get("features") or {}
    return list(features)
