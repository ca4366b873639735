"""Finish a freshly baked project: bring a local dataset under DVC, then git + DVC init and commit.

A local dataset is copied into data/raw/ and tracked with `dvc add` (git sees only its .dvc
pointer), and conf/data/default.yaml is pointed at the copy. The first commit works without a
global git identity.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

LOCAL_DATASET_NOTE = Path(".local-dataset")
DATA_CONFIG = Path("conf/data/default.yaml")
DATASET = "{{ cookiecutter.dataset }}".strip()
AUTHOR = "{{ cookiecutter.author_name }}".strip() or "cookiecutter"


def run(*cmd: str) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True)
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


def copy_local_dataset() -> str | None:
    """Copy the dataset into data/raw/ and point the data config at it; return its new path."""
    if not LOCAL_DATASET_NOTE.exists():
        return None
    source = Path(LOCAL_DATASET_NOTE.read_text(encoding="utf-8"))
    LOCAL_DATASET_NOTE.unlink()
    target = Path("data/raw") / source.name
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copy2(source, target)
    text = DATA_CONFIG.read_text(encoding="utf-8")
    DATA_CONFIG.write_text(text.replace(f'source: "{DATASET}"', f'source: "{target.as_posix()}"'),
                           encoding="utf-8")
    return target.as_posix()


def git_identity() -> list[str]:
    """`-c` flags for a commit on machines without a configured git identity."""
    flags = []
    for key, fallback in (("user.name", AUTHOR), ("user.email", "noreply@example.com")):
        if subprocess.run(["git", "config", "--get", key], capture_output=True).returncode != 0:
            flags += ["-c", f"{key}={fallback}"]
    return flags


def main() -> None:
    local = copy_local_dataset()
    if shutil.which("git") is None:
        print("note: git is not installed: run `git init && dvc init` yourself.")
        return
    run("git", "init", "--quiet", "--initial-branch=main")
    dvc = dvc_command()
    if dvc is None:
        print("note: DVC is not installed here yet; `make install` installs it and runs `dvc init`.")
        if local:
            # keep the raw data out of git until `make install` tracks it with DVC
            Path("data/raw/.gitignore").write_text(f"/{Path(local).name}\n", encoding="utf-8")
    else:
        run(*dvc, "init", "--quiet")
        run(*dvc, "config", "core.autostage", "true")
        run(*dvc, "config", "core.analytics", "false")  # no telemetry calls from an offline box
        if local:
            run(*dvc, "add", "--quiet", local)
    run("git", "add", "--all")
    run("git", *git_identity(), "commit", "--quiet", "-m", "Initial project from cookiecutter-hf-classifier")
    print(f"Project ready in {Path.cwd()}. Next: cd {Path.cwd().name} && make install && make all")


if __name__ == "__main__":
    main()
