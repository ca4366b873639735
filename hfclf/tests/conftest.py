"""Fixtures for the library's own tests: a tiny BERT built in-process (no download, no pretrained
weights), a small synthetic ticket dataset, one project baked from the template (once per session)
and a runner for `hfclf <stage>` in a copy of that project's conf/ and dvc.yaml.

The tests run from the library (`cd hfclf && pytest tests`), not from inside a baked project: the
project files a stage needs (conf/, dvc.yaml, data/out_of_scope, data/challenge) come from a real
bake of the template this library ships with.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

LIBRARY = Path(__file__).resolve().parents[1]          # hfclf/ (pyproject.toml, src/, tests/)
TEMPLATE_ROOT = LIBRARY.parent                           # the cookiecutter template (cookiecutter.json)
PROJECT_FILES = ("conf", "dvc.yaml", "data/out_of_scope", "data/challenge")
TOPICS = {
    "ORDER": ["cancel my order", "where is my order", "change the order i placed", "order never arrived"],
    "REFUND": ["i want my money back", "refund for the broken item", "status of my refund", "refund policy please"],
    "ACCOUNT": ["reset my password", "delete my account", "cannot log in to my account", "update my email"],
}


def make_tickets(rows_per_label: int = 30, seed: int = 0) -> pd.DataFrame:
    """Short support tickets in three classes, varied enough that a tiny model can learn them."""
    rng = np.random.default_rng(seed)
    fillers = ["", "please", "asap", "thanks", "hello", "i need help", "urgent", "today"]
    records = []
    for label, phrases in TOPICS.items():
        for i in range(rows_per_label):
            text = f"{rng.choice(fillers)} {phrases[i % len(phrases)]} {rng.choice(fillers)} #{i}".strip()
            records.append({"instruction": text, "category": label, "tags": rng.choice(["B", "BQ", "BL"])})
    return pd.DataFrame(records).sample(frac=1.0, random_state=seed).reset_index(drop=True)


@pytest.fixture()
def tickets() -> pd.DataFrame:
    return make_tickets()


@pytest.fixture(scope="session")
def baked_project(tmp_path_factory) -> Path:
    """The template baked once, non-interactively, on a small local CSV (git + DVC initialised by
    its hooks). Tests copy files out of it; none writes into it."""
    from cookiecutter.main import cookiecutter

    root = tmp_path_factory.mktemp("bake")
    dataset = root / "tickets.csv"
    make_tickets()[["instruction", "category"]].to_csv(dataset, index=False)
    env = {"DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        project = Path(cookiecutter(str(TEMPLATE_ROOT), no_input=True, output_dir=str(root / "out"),
                                    extra_context={"dataset": str(dataset)}))
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    assert (project / "conf").is_dir() and (project / "dvc.yaml").is_file(), project
    return project


def copy_project(baked: Path, target: Path) -> Path:
    """Copy the baked project's conf/, dvc.yaml and probe data into `target` (created if missing)."""
    target.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        source = baked / name
        if source.is_dir():
            shutil.copytree(source, target / name)
        elif source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target / name)
    return target


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The seeded tiny BERT of hfclf.testing, saved like a Hub model folder."""
    from hfclf.testing import tiny_bert

    return tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def stage_env(**extra: str) -> dict[str, str]:
    """The environment of a stage subprocess: offline, no telemetry, no inherited MLflow settings.
    `hfclf` is imported from the installed (editable) library, never from a project's src/."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", DVC_NO_ANALYTICS="1",
               TOKENIZERS_PARALLELISM="false")
    env.update(extra)
    return env


def hfclf_command(command: str, *args: str) -> list[str]:
    """`hfclf <command> args...` run by this interpreter (no dependence on PATH)."""
    return [sys.executable, "-m", "hfclf", command, *args]


@pytest.fixture()
def workdir(baked_project, tmp_path) -> Path:
    """A copy of the baked project's conf/, dvc.yaml and probe data in a temp folder: stages run there."""
    return copy_project(baked_project, tmp_path)


def run_stage(workdir: Path, stage: str, *overrides: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run `hfclf <stage> overrides...` in workdir (MLflow in workdir/mlflow.db); fail loudly if asked."""
    result = subprocess.run(hfclf_command(stage, f"tracking.uri=sqlite:///{workdir / 'mlflow.db'}", *overrides),
                            cwd=workdir, env=stage_env(), capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        pytest.fail(f"stage {stage} exited {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result
