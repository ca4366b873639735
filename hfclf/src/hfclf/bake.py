"""The cookiecutter hooks' logic: validate the answers (pre_gen), finish the project (post_gen).

The template's hooks/ are a few lines each: they load the answers as JSON *data* and call
`pre_gen` / `post_gen` here, so this logic is importable and unit-tested. Hooks run under the
interpreter that runs cookiecutter (or cruft), which may have nothing but the standard library:
this module imports only the standard library at import time; pyarrow (Parquet columns) is
imported lazily and skipped when absent.

post_gen records where the bake came from in a cruft-compatible `.cruft.json` (template, commit,
context), committed in the project's first commit, so that `make install` can install the pinned
library from the same place and `make update` (cruft) can take later template commits.

`make update` re-renders the template at two commits in temporary folders; there the hooks run
with HFCLF_BAKE_MODE=render (a bare `cruft update` / `cruft diff` is recognised too, on Linux):
files are rendered exactly as at bake time (the data config points at data/raw/ when the project
copied its dataset there), but nothing is validated against the file system, copied, initialised
or committed.
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

RENDER_MODE_ENV = "HFCLF_BAKE_MODE"       # "render": only render (set by `make update`)
PROJECT_DIR_ENV = "HFCLF_PROJECT_DIR"     # the project being updated (set by `make update`)
LOCAL_DATASET_NOTE = ".local-dataset"     # pre_gen -> post_gen: the resolved local dataset
DATA_CONFIG = Path("conf/data/default.yaml")
CRUFT_FILE = ".cruft.json"
# Paths `cruft update` leaves out of its template renders: never template files, only what a
# bake or a pipeline run adds.
CRUFT_SKIP = [".git", ".dvc", CRUFT_FILE, "dvc.lock", "data/processed", "models", "reports", "dist",
              "mlruns", "mlflow.db"]
# Context keys that say where *this* cookiecutter run happened, not what the project is.
RUN_KEYS = ("_repo_dir", "_output_dir", "_checkout")
ABBREVIATIONS = {"gh": "https://github.com/{}.git", "gl": "https://gitlab.com/{}.git",
                 "bb": "https://bitbucket.org/{}"}

SLUG_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
PACKAGE_RE = re.compile(r"^[a-z_][a-z0-9_]*$")
HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$|^[A-Za-z0-9][\w.-]*$")
HUB_REPO_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
DATA_SUFFIXES = {".csv", ".tsv", ".jsonl", ".json", ".parquet"}
RESERVED_PACKAGES = {"test", "tests", "src", "conf", "data", "models", "datasets", "transformers",
                     "torch", "mlflow", "hydra", "dvc", "gradio", "hfclf"}
# Answers pasted into double-quoted YAML strings (conf/): no quote, backslash or line break.
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
    for variable in QUOTED_IN_YAML:
        value = text(answers, variable)
        if '"' in value or "\\" in value:
            raise BakeError(variable, f"{value!r} holds a double quote or backslash, which the "
                                      "YAML configs cannot hold as typed; use forward slashes in paths.")
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


# --------------------------------------------------------------------------------------- post_gen

def post_gen(answers: Mapping[str, Any], project_dir: str | Path = ".",
             repo_dir: str | Path | None = None) -> None:
    """Finish a freshly rendered project: local dataset under DVC, .cruft.json, git + DVC init, commit.

    In render mode (`make update`) only the file contents a bake would have are produced.
    """
    project = Path(project_dir).resolve()
    dataset = text(answers, "dataset")
    if render_only():
        updating = os.environ.get(PROJECT_DIR_ENV) or os.environ.get("PWD", "")
        name = Path(dataset).name
        if updating and looks_local(dataset) and any(
                (Path(updating) / "data" / "raw" / n).exists() for n in (name, f"{name}.dvc")):
            point_data_config(project, dataset, f"data/raw/{name}")
        return
    local = copy_local_dataset(project, dataset)
    if not (project / CRUFT_FILE).exists():
        write_cruft_file(project, cruft_state(answers, repo_dir))
    if shutil.which("git") is None:
        print("note: git is not installed: run `git init && dvc init` yourself.")
        return
    author = text(answers, "author_name") or "cookiecutter"
    run(project, "git", "init", "--quiet", "--initial-branch=main")
    dvc = dvc_command()
    if dvc is None:
        print("note: DVC is not installed here yet; `make install` installs it and runs `dvc init`.")
        if local:
            # keep the raw data out of git until `make install` tracks it with DVC
            (project / "data/raw/.gitignore").write_text(f"/{Path(local).name}\n", encoding="utf-8")
    else:
        run(project, *dvc, "init", "--quiet")
        run(project, *dvc, "config", "core.autostage", "true")
        run(project, *dvc, "config", "core.analytics", "false")  # no telemetry calls from an offline box
        if local:
            run(project, *dvc, "add", "--quiet", local)
    run(project, "git", "add", "--all")
    run(project, "git", *git_identity(project, author), "commit", "--quiet", "-m",
        "Initial project from cookiecutter-hf-classifier")
    print(f"Project ready in {project}. Next: cd {project.name} && make install && make all")


def run(cwd: Path, *cmd: str) -> None:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(f"ERROR: `{' '.join(cmd)}` failed:\n{result.stdout}{result.stderr}\n")
        sys.exit(1)


def dvc_command() -> list[str] | None:
    """DVC from the interpreter running cookiecutter, else from PATH, else None."""
    probe = subprocess.run([sys.executable, "-c", "import dvc"], capture_output=True)
    if probe.returncode == 0:
        return [sys.executable, "-m", "dvc"]
    found = shutil.which("dvc")
    return [found] if found else None


def point_data_config(project: Path, dataset: str, target: str) -> None:
    config = project / DATA_CONFIG
    if config.exists():
        content = config.read_text(encoding="utf-8")
        config.write_text(content.replace(f'source: "{dataset}"', f'source: "{target}"'),
                          encoding="utf-8")


def copy_local_dataset(project: Path, dataset: str) -> str | None:
    """Copy the dataset pre_gen resolved into data/raw/ and point the data config at it."""
    note = project / LOCAL_DATASET_NOTE
    if not note.exists():
        return None
    source = Path(note.read_text(encoding="utf-8"))
    note.unlink()
    target = Path("data/raw") / source.name
    (project / target).parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, project / target)
    else:
        shutil.copy2(source, project / target)
    point_data_config(project, dataset, target.as_posix())
    return target.as_posix()


def git_identity(project: Path, author: str) -> list[str]:
    """`-c` flags for a commit on machines without a configured git identity."""
    flags = []
    for key, fallback in (("user.name", author), ("user.email", "noreply@example.com")):
        if subprocess.run(["git", "config", "--get", key], cwd=project,
                          capture_output=True).returncode != 0:
            flags += ["-c", f"{key}={fallback}"]
    return flags


# ---------------------------------------------------------------------------- where it came from

def git_output(folder: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True)
    except OSError:
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def template_source(template: str, repo_dir: Path | None) -> tuple[str, Path | None]:
    """(template as cruft can clone it, local checkout or None): abbreviations expanded, a local
    path made absolute (the folder cookiecutter actually read)."""
    prefix, _, rest = template.partition(":")
    if prefix in ABBREVIATIONS and rest and not rest.startswith("//"):
        return ABBREVIATIONS[prefix].format(rest), repo_dir
    if "://" in template or re.match(r"^[\w.-]+@[\w.-]+:", template):
        return template, repo_dir
    local = Path(repo_dir) if repo_dir else Path(os.path.expanduser(template))
    return str(local.resolve()), local.resolve()


def cruft_state(answers: Mapping[str, Any], repo_dir: str | Path | None) -> dict[str, Any]:
    """The `.cruft.json` content `cruft create` would write for this bake.

    Under `cruft create` (answers hold `_commit`) it is byte-for-byte what cruft writes after
    this hook, so the first commit already holds it. Under plain cookiecutter: template as given
    (absolute when local), the checkout's HEAD, the answers without the keys that describe this
    run (_repo_dir, _output_dir, _checkout), plus cruft's _template/_commit and a skip list.
    """
    repo = Path(repo_dir) if repo_dir else None
    keys = template_keys(repo) + ["_template", "_commit"]  # cruft appends these two, in this order
    ordered = {k: answers[k] for k in keys if k in answers}
    ordered.update({k: v for k, v in answers.items() if k not in ordered})
    if "_commit" in answers:  # cruft create: it renders with _template/_commit and no run keys
        return {"template": answers.get("_template"), "commit": answers["_commit"], "checkout": None,
                "context": {"cookiecutter": ordered}, "directory": None}
    template, checkout_dir = template_source(text(answers, "_template") or str(repo or "."), repo)
    commit, directory = None, None
    if checkout_dir is not None and git_output(checkout_dir, "rev-parse", "--is-inside-work-tree") == "true":
        commit = git_output(checkout_dir, "rev-parse", "HEAD")
        top = git_output(checkout_dir, "rev-parse", "--show-toplevel")
        if top and "://" not in template and Path(top).resolve() != checkout_dir.resolve():
            directory = checkout_dir.resolve().relative_to(Path(top).resolve()).as_posix()
            template = str(Path(top).resolve())
    context = {k: v for k, v in ordered.items() if k not in RUN_KEYS}
    context["_template"] = template
    context["_commit"] = commit
    return {"template": template, "commit": commit, "checkout": answers.get("_checkout"),
            "context": {"cookiecutter": context}, "directory": directory, "skip": list(CRUFT_SKIP)}


def template_keys(repo: Path | None) -> list[str]:
    """cookiecutter.json's key order (what cruft writes; the hook's answers arrive sorted)."""
    try:
        spec = json.loads((repo / "cookiecutter.json").read_text(encoding="utf-8")) if repo else {}
    except (OSError, ValueError):
        spec = {}
    return [k for k in spec if k != "__prompts__"]


def write_cruft_file(project: Path, state: Mapping[str, Any]) -> None:
    # the format of cruft's own json_dumps, so cruft's rewrites leave no whitespace diff
    text_ = json.dumps(state, ensure_ascii=False, indent=2, separators=(",", ": ")) + "\n"
    (project / CRUFT_FILE).write_text(text_, encoding="utf-8")
