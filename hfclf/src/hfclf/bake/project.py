"""The project's side of a bake (post_gen): finish the freshly rendered folder into a working repository.

This module owns what happens after cookiecutter has written the files: the local dataset pre_gen
resolved is copied into data/raw/ and the data config (DATA_CONFIG) pointed at it; .cruft.json is
written (its content is hfclf.bake.provenance's business); git and, when it is installed, DVC are
initialised (the dataset tracked by DVC, never by git); and the first commit is made, with a
fallback identity on machines that have none. In render mode (`make update`) it only repeats the
data config rewrite, so the re-rendered files read as the project's own.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping

from hfclf.bake.answers import LOCAL_DATASET_NOTE, PROJECT_DIR_ENV, looks_local, render_only, text
from hfclf.bake.provenance import CRUFT_FILE, cruft_state, write_cruft_file

DATA_CONFIG = Path("conf/data/default.yaml")


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


def _as_rendered(value: str) -> str:
    """`value` as the template renders it into YAML (Jinja's `tojson`: JSON, HTML-safe escapes)."""
    return (json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("'", "\\u0027"))


def point_data_config(project: Path, dataset: str, target: str) -> None:
    config = project / DATA_CONFIG
    if config.exists():
        content = config.read_text(encoding="utf-8")
        for rendered in (_as_rendered(dataset), json.dumps(dataset), f'"{dataset}"'):
            if f"source: {rendered}" in content:
                content = content.replace(f"source: {rendered}", f"source: {_as_rendered(target)}", 1)
                break
        config.write_text(content, encoding="utf-8")


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
