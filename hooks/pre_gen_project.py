"""Reject bad answers before any file is written, naming the variable and what is wrong.

Runs with the interpreter that runs cookiecutter, which may have nothing but the standard
library: CSV/TSV/JSONL headers and `datasets.save_to_disk` folders are read with it; Parquet
columns are checked when pyarrow is importable.
"""
import csv
import json
import os
import re
import sys
from pathlib import Path

PROJECT_SLUG = "{{ cookiecutter.project_slug }}"
PACKAGE_NAME = "{{ cookiecutter.package_name }}"
DATASET = "{{ cookiecutter.dataset }}".strip()
TEXT_COLUMN = "{{ cookiecutter.text_column }}".strip()
LABEL_COLUMN = "{{ cookiecutter.label_column }}".strip()
BASE_MODEL = "{{ cookiecutter.base_model }}".strip()
HUB_REPO_ID = "{{ cookiecutter.hub_repo_id }}".strip()

SLUG_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
PACKAGE_RE = re.compile(r"^[a-z_][a-z0-9_]*$")
HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$|^[A-Za-z0-9][\w.-]*$")
DATA_SUFFIXES = {".csv", ".tsv", ".jsonl", ".json", ".parquet"}
LOCAL_DATASET_NOTE = ".local-dataset"
RESERVED_PACKAGES = {"test", "tests", "src", "conf", "data", "models", "datasets", "transformers",
                     "torch", "mlflow", "hydra", "dvc", "gradio"}


def fail(variable: str, problem: str) -> None:
    sys.stderr.write(f"\nERROR: {variable}: {problem}\n\n")
    sys.exit(1)


def resolve_local(path_text: str) -> Path | None:
    """Where a local dataset answer points to, or None when it reads as a Hub id.

    Hooks run inside the new project folder, so a relative path is tried against the folder
    cookiecutter was started from ($PWD) and the output folder.
    """
    path = Path(os.path.expanduser(path_text))
    candidates = [path] if path.is_absolute() else [
        Path(os.environ.get("PWD", os.getcwd())) / path, Path.cwd().parent / path]
    for candidate in candidates:
        if candidate.exists():
            return candidate.resolve()
    looks_like_path = (path.suffix.lower() in DATA_SUFFIXES or path_text.startswith((".", "/", "~"))
                       or not HUB_ID_RE.match(path_text))
    if looks_like_path:
        tried = ", ".join(str(c) for c in candidates)
        fail("dataset", f"local dataset '{path_text}' does not exist (looked at {tried}). "
                        "Pass an existing CSV/TSV/JSONL/Parquet file or save_to_disk folder, "
                        "or a Hugging Face dataset id such as owner/name.")
    return None


def columns_of(path: Path) -> list[str] | None:
    """The column names of a local dataset, or None when they cannot be read here."""
    if path.is_dir():
        return save_to_disk_columns(path)
    if not os.access(path, os.R_OK):
        fail("dataset", f"'{path}' is not readable (check its permissions).")
    suffix = path.suffix.lower()
    try:
        with path.open("r", encoding="utf-8-sig", newline="") as handle:
            if suffix in {".csv", ".tsv"}:
                header = next(csv.reader(handle, delimiter="\t" if suffix == ".tsv" else ","), None)
                if not header:
                    fail("dataset", f"'{path}' is empty: it has no header row.")
                return [h.strip() for h in header]
            if suffix in {".jsonl", ".json"}:
                first = handle.readline().strip()
                if not first:
                    fail("dataset", f"'{path}' is empty.")
                try:
                    record = json.loads(first)
                except json.JSONDecodeError as err:
                    fail("dataset", f"'{path}' line 1 is not JSON ({err.msg}); expected one JSON object per line.")
                if isinstance(record, list) and record and isinstance(record[0], dict):
                    return list(record[0])
                if not isinstance(record, dict):
                    fail("dataset", f"'{path}' line 1 is not a JSON object.")
                return list(record)
    except UnicodeDecodeError as err:
        fail("dataset", f"'{path}' is not UTF-8 text (byte {err.start}: {err.reason}); re-save it as UTF-8.")
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            return None
        try:
            return list(pq.read_schema(path).names)
        except Exception as err:  # pyarrow raises several types for a damaged file
            fail("dataset", f"'{path}' is not a readable Parquet file ({err}).")
    fail("dataset", f"'{path}' has an unsupported type '{suffix}'; use one of "
                    f"{', '.join(sorted(DATA_SUFFIXES))} or a datasets.save_to_disk folder.")
    return None


def save_to_disk_columns(folder: Path) -> list[str]:
    infos = [folder / "dataset_info.json"] + sorted(folder.glob("*/dataset_info.json"))
    infos = [i for i in infos if i.exists()]
    if not infos:
        fail("dataset", f"folder '{folder}' is not a datasets.save_to_disk folder "
                        "(no dataset_info.json in it or in its split folders).")
    features = json.loads(infos[0].read_text(encoding="utf-8")).get("features") or {}
    return list(features)


def main() -> None:
    if not SLUG_RE.match(PROJECT_SLUG):
        fail("project_slug", f"'{PROJECT_SLUG}' is not a valid slug: use lowercase letters, digits "
                             "and single dashes, starting with a letter (e.g. support-ticket-classifier).")
    if not PACKAGE_RE.match(PACKAGE_NAME) or PACKAGE_NAME in RESERVED_PACKAGES:
        fail("package_name", f"'{PACKAGE_NAME}' is not a valid package name: use a lowercase Python "
                             "identifier (letters, digits, underscores) that does not shadow a library "
                             f"({', '.join(sorted(RESERVED_PACKAGES))}).")
    for variable, value in (("text_column", TEXT_COLUMN), ("label_column", LABEL_COLUMN),
                            ("dataset", DATASET), ("base_model", BASE_MODEL)):
        if not value:
            fail(variable, "must not be empty.")
    if TEXT_COLUMN == LABEL_COLUMN:
        fail("label_column", f"'{LABEL_COLUMN}' is also the text_column; they must differ.")
    if HUB_REPO_ID and not re.match(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$", HUB_REPO_ID):
        fail("hub_repo_id", f"'{HUB_REPO_ID}' is not a Hub repo id; use owner/name or leave it empty.")

    local = resolve_local(DATASET)
    if local is None:
        return
    # post_gen_project.py copies the dataset from here (hooks run inside the new project folder).
    Path(LOCAL_DATASET_NOTE).write_text(str(local), encoding="utf-8")
    columns = columns_of(local)
    if columns is None:
        print(f"note: could not read the columns of '{local}' here (install pyarrow); "
              "`make prepare` will check them.")
        return
    for variable, column in (("text_column", TEXT_COLUMN), ("label_column", LABEL_COLUMN)):
        if column not in columns:
            fail(variable, f"column '{column}' is not in '{local}'. Its columns are: {', '.join(columns)}.")


if __name__ == "__main__":
    main()
