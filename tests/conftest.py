"""Shared fixtures for the template's tests: bake projects, then run what was baked.

Baked projects reuse this environment (no per-bake install): their package is put on
PYTHONPATH and this interpreter's bin/ on PATH, exactly as `make install` would.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
BITEXT_CSV = SHARED / "data" / "bitext" / "customer_support_sample.csv"
# Bitext's language-variation tags (its README): dataset knowledge, so it lives here, not in the template
BITEXT_TAGS = {"B": "basic syntax", "C": "coordinated", "E": "abbreviations", "I": "interrogative", "K": "keyword mode",
               "L": "semantic variation", "M": "morphological variation", "N": "negation", "P": "politeness",
               "Q": "colloquial", "W": "offensive", "Z": "errors and typos"}


@pytest.fixture(scope="session")
def bitext_csv() -> Path:
    assert BITEXT_CSV.exists(), f"the Bitext sample is expected at {BITEXT_CSV} (../shared beside the repo)"
    return BITEXT_CSV


def project_env(project: Path, **extra: str) -> dict[str, str]:
    """The environment a baked project runs in: this venv, its src/ on PYTHONPATH, no network."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PYTEST_"))}
    env.update({
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "VIRTUAL_ENV": sys.prefix,
        "PYTHONPATH": str(project / "src"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "DVC_NO_ANALYTICS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra)
    return env


def run(cmd: list[str] | str, project: Path, check: bool = True, timeout: int = 900,
        **extra_env: str) -> subprocess.CompletedProcess:
    """Run a command inside a baked project; on failure show its output."""
    result = subprocess.run(cmd, cwd=project, env=project_env(project, **extra_env), capture_output=True,
                            text=True, timeout=timeout, shell=isinstance(cmd, str))
    if check and result.returncode != 0:
        pytest.fail(f"`{cmd}` exited {result.returncode}\n--- stdout ---\n{result.stdout[-6000:]}\n"
                    f"--- stderr ---\n{result.stderr[-6000:]}")
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(cmd: list[str], project: Path, url: str, cwd: Path | None = None, timeout: float = 120,
            **extra_env: str) -> Iterator[subprocess.Popen]:
    """Start a server (`make demo`, `mlflow server` ...) in its own process group, wait until `url`
    answers, and on exit stop the whole group: MLflow and Gradio start workers a plain kill would orphan."""
    proc = subprocess.Popen(cmd, cwd=cwd or project, env=project_env(project, **extra_env),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + timeout
        while True:
            try:
                urllib.request.urlopen(url, timeout=5).read()
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    pytest.fail(f"`{' '.join(cmd)}` did not answer at {url} within {timeout:.0f} s "
                                f"(exit code {proc.poll()})")
                time.sleep(1)
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def set_param(path: Path, key: str, value: str) -> None:
    """Set `key: value` in a commented YAML config, keeping the comment (first match of the key)."""
    import re

    text = path.read_text(encoding="utf-8")
    new, count = re.subn(rf"^(\s*{re.escape(key)}:\s*)([^#\n]*?)(\s*#.*)?$",
                         lambda m: f"{m.group(1)}{value}{m.group(3) or ''}", text, count=1, flags=re.M)
    assert count == 1, f"no key '{key}' in {path}"
    path.write_text(new, encoding="utf-8")


def bake(cookies, **context) -> Path:
    """Bake with extra_context, assert success, return the project folder."""
    result = cookies.bake(extra_context=context)
    assert result.exception is None, f"bake failed: {result.exception}"
    assert result.exit_code == 0
    return Path(result.project_path)


@pytest.fixture(scope="session")
def trained_project(tmp_path_factory, bitext_csv) -> Path:
    """One project baked on the Bitext sample whose whole pipeline ran once (shared by slow tests).

    Baked with cookiecutter's API (pytest-cookies' fixture is function-scoped); the budget is
    kept small: one epoch.
    """
    from cookiecutter.main import cookiecutter

    out = tmp_path_factory.mktemp("trained")
    project = Path(cookiecutter(str(ROOT), no_input=True, output_dir=str(out),
                                extra_context={"dataset": str(bitext_csv)}))
    set_param(project / "conf" / "train.yaml", "max_epochs", "1")
    # what a Bitext user would add: its `tags` column holds letter codes, sliced one letter at a time
    set_param(project / "conf" / "analyze.yaml", "flag_columns", "{tags: " + json.dumps(BITEXT_TAGS) + "}")
    run(["git", "commit", "-qam", "one epoch for tests", "--allow-empty"], project,  # epochs may already be 1
        GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com", GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.com")
    run(["dvc", "repro"], project)
    return project
