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
import urllib.parse
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
GIT_ID = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
          "GIT_COMMITTER_EMAIL": "t@example.com"}
# a small 3-class task for tiny-model projects: 3 labels x 7 words x 3 frames = 63 distinct texts
WORDS = {"billing": ["invoice", "refund", "charge", "payment", "receipt", "bill", "fee"],
         "shipping": ["parcel", "delivery", "courier", "package", "tracking", "shipment", "box"],
         "account": ["password", "login", "username", "profile", "email", "signin", "settings"]}
FRAMES = ["I have a question about my {w}", "please help me with the {w}", "something is wrong with my {w}"]


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
        stop_group(proc)


CHROMIUM = "/usr/bin/chromium"   # Debian's (.ci/run installs it), driven by Playwright
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]


def demo_answer(project: Path, ticket: str, answer_field: str) -> str:
    """`make demo` on a free port; `ticket` typed into the page in Chromium and submitted; the text
    that appears in the field labelled `answer_field`."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is expected (.ci/run installs it: apt-get install chromium)"
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with serving(["make", "demo", f"DEMO_PORT={port}"], project, url), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(url)
            page.get_by_label("Ticket").fill(ticket)
            page.get_by_role("button", name="Submit").click()
            answer = page.get_by_label(answer_field)
            page.wait_for_function("el => el.value.length > 0", arg=answer.element_handle(), timeout=60_000)
            return answer.input_value()
        finally:
            browser.close()


def stop_group(proc: subprocess.Popen) -> None:
    """Stop a process started with start_new_session=True and everything it started (TERM, then KILL)."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


@contextlib.contextmanager
def mlflow_server(project: Path, store: Path) -> Iterator[str]:
    """A real `mlflow server` on 127.0.0.1 (sqlite backend, artifacts in a local folder under `store`),
    in `project`'s environment; yields its base URL."""
    store.mkdir(parents=True, exist_ok=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with serving(["mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                  "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
                  "--artifacts-destination", str(store / "artifacts")], project, f"{base}/health", cwd=store,
                 MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"):   # GenAI job runner: 5 processes nothing here uses
        yield base


def api(base: str, endpoint: str, body: dict | None = None, **query: str):
    """Call an MLflow REST endpoint: JSON back, or the raw bytes of /get-artifact."""
    url = f"{base}{endpoint}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    request = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        raw = response.read()
    return raw if endpoint.startswith("/get-artifact") else json.loads(raw)


def set_param(path: Path, key: str, value: str) -> None:
    """Set `key: value` in a commented YAML config, keeping the comment (first match of the key)."""
    import re

    text = path.read_text(encoding="utf-8")
    new, count = re.subn(rf"^(\s*{re.escape(key)}:\s*)([^#\n]*?)(\s*#.*)?$",
                         lambda m: f"{m.group(1)}{value}{m.group(3) or ''}", text, count=1, flags=re.M)
    assert count == 1, f"no key '{key}' in {path}"
    path.write_text(new, encoding="utf-8")


def tiny_csv(path: Path) -> Path:
    rows = [(frame.format(w=word), label) for label, words in WORDS.items() for word in words for frame in FRAMES]
    path.write_text("text,label\n" + "".join(f'"{t}",{l}\n' for t, l in rows), encoding="utf-8")
    return path


def tiny_project(base: Path, project_name: str, max_epochs: int) -> Path:
    """A project baked on the 63-text CSV, configured to fine-tune hfclf.testing's seeded tiny BERT
    on the CPU (every stage in seconds; evaluation with the majority baseline only), committed to git."""
    return tiny_model_project(base, max_epochs, project_name=project_name,
                              dataset=str(tiny_csv(base / "tickets.csv")), text_column="text", label_column="label")


def tiny_model_project(base: Path, max_epochs: int, **answers: str) -> Path:
    """A project baked with `answers` into base/out, set to fine-tune hfclf.testing's seeded tiny
    BERT on the CPU (the majority baseline only, 50 bootstrap samples), committed to git."""
    from cookiecutter.main import cookiecutter

    from hfclf.testing import tiny_bert

    model = tiny_bert(base / "tiny-bert")
    project = Path(cookiecutter(str(ROOT), no_input=True, output_dir=str(base / "out"), extra_context=answers))
    set_param(project / "conf" / "model" / "default.yaml", "name", f'"{model}"')
    set_param(project / "conf" / "model" / "default.yaml", "freeze_embeddings", "false")
    set_param(project / "conf" / "smoke.yaml", "steps", "30")
    set_param(project / "conf" / "train.yaml", "max_epochs", str(max_epochs))
    set_param(project / "conf" / "train.yaml", "learning_rate", "1.0e-2")   # a random tiny model learns fast
    set_param(project / "conf" / "train.yaml", "batch_size", "8")
    set_param(project / "conf" / "compute" / "default.yaml", "device", "cpu")
    set_param(project / "conf" / "evaluate.yaml", "samples", "50")
    set_param(project / "conf" / "evaluate.yaml", "run", "[majority]")    # no embedding baselines: faster
    run(["git", "commit", "-qam", "a tiny model for tests"], project, **GIT_ID)
    return project


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
    run(["git", "commit", "-qam", "one epoch for tests", "--allow-empty"], project, **GIT_ID)   # epochs may already be 1
    run(["dvc", "repro"], project)
    return project
