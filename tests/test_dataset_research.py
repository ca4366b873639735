"""Dataset research in a baked project, through its Makefile: `make find-datasets`, `make use-dataset`,
then DVC sees the data config change and `prepare` really reads the pinned Hub dataset.

The Hugging Face Hub cannot be reached from where these tests run. Each test starts the baked
library's stand-in, `hfclf/tests/fake_hub.py` (an HTTP server on 127.0.0.1 answering the Hub API
calls huggingface_hub and datasets make, with the Hub's response shapes), and points `HF_ENDPOINT`
at it; the make targets run as subprocesses because huggingface_hub reads HF_ENDPOINT at import.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, bake, run


def fake_hub_module(project: Path):
    spec = importlib.util.spec_from_file_location("library_fake_hub", ROOT / "hfclf" / "tests" / "fake_hub.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def project(cookies, bitext_csv) -> Path:
    return bake(cookies, dataset=str(bitext_csv))


def test_find_pin_and_prepare_a_hub_dataset(project, tmp_path):
    fake_hub = fake_hub_module(project)
    run(["dvc", "repro", "prepare"], project)                      # the local sample first: dvc.lock exists
    with fake_hub.FakeHub() as hub:
        online = {"HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0",
                  "HF_HOME": str(tmp_path / "hf-home")}
        found = run('make find-datasets QUERY="customer support" LIMIT=5', project, **online)
        assert f"| 1 | {fake_hub.BITEXT} | 8,123 | 231 | cdla-sharing-1.0 |" in found.stdout
        assert "no licence; no text column; no label column" in found.stdout
        report = (project / "reports" / "dataset_candidates.md").read_text()
        assert f"make use-dataset ID={fake_hub.BITEXT} LABEL=category TEXT=instruction" in report
        assert json.loads((project / "reports" / "dataset_candidates.json").read_text())["limit"] == 5

        typo = run(f"make use-dataset ID={fake_hub.BITEXT}x LABEL=category", project, check=False, **online)
        assert typo.returncode != 0 and f"dataset '{fake_hub.BITEXT}x' was not found" in typo.stderr
        missing = run(f"make use-dataset ID={fake_hub.TICKETS} LABEL=topic", project, check=False, **online)
        assert "has no column 'topic'" in missing.stderr and "ticket_id, subject, body, queue, priority" in missing.stderr
        assert "Traceback" not in typo.stderr + missing.stderr

        run(f"make use-dataset ID={fake_hub.BITEXT} LABEL=category", project, **online)
        data_config = yaml.safe_load((project / "conf" / "data" / "default.yaml").read_text())
        assert data_config["source"] == fake_hub.BITEXT and data_config["revision"] == "01" * 20
        assert (data_config["text_column"], data_config["label_column"]) == ("instruction", "category")

        status = run(["dvc", "status", "prepare"], project).stdout
        assert "conf/data/default.yaml" in status and "modified:           source" in status
        assert "modified:           revision" in status

        run(["dvc", "repro", "prepare"], project, **online)        # now reads the pinned Hub dataset
    labels = json.loads((project / "data" / "processed" / "labels.json").read_text())
    assert labels["source"] == {"type": "hub", "id": fake_hub.BITEXT, "revision": "01" * 20, "subset": None}
    profile = json.loads((project / "reports" / "data_profile.json").read_text())
    assert profile["rows_total"] == 400 and profile["num_classes"] == 11
    assert any(f"/resolve/{'01' * 20}/{fake_hub.BITEXT_FILE}" in r for r in hub.requests)
    assert "changed" not in run(["dvc", "status", "prepare"], project).stdout


def test_offline_and_usage_messages(project):
    offline = run('make find-datasets QUERY="customer support"', project, check=False)   # project_env: HF_HUB_OFFLINE=1
    assert offline.returncode != 0
    assert "ERROR: find-datasets needs the Hugging Face Hub, but HF_HUB_OFFLINE is set" in offline.stderr
    assert "Traceback" not in offline.stderr + offline.stdout
    usage = run("make use-dataset ID=acme/tickets", project, check=False)
    assert usage.returncode != 0 and "usage: make use-dataset ID=owner/name LABEL=<column>" in usage.stderr
    assert "find-datasets" in run("make help", project).stdout
