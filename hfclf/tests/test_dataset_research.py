"""find-datasets and use-dataset against a local stand-in for the Hugging Face Hub.

The real Hub cannot be reached from where these tests run, so each test starts `fake_hub.FakeHub`,
an HTTP server on 127.0.0.1 that answers the Hub API calls these commands make (dataset search,
dataset info, a file's first bytes) with the Hub's response shapes, and points `HF_ENDPOINT` at it.
huggingface_hub reads HF_ENDPOINT when it is imported, so the commands run as subprocesses.
"""
from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import hfclf_command, stage_env
from fake_hub import BITEXT, BITEXT_FILE, CHATS, MULTI, TICKETS, FakeHub


@pytest.fixture()
def hub():
    with FakeHub() as server:
        yield server


def run(workdir: Path, command: str, *overrides: str, endpoint: str, **env: str) -> subprocess.CompletedProcess:
    """`hfclf <command> overrides...` with the Hub at `endpoint` (online by default)."""
    env = stage_env(HF_ENDPOINT=endpoint, HF_HUB_OFFLINE=env.pop("HF_HUB_OFFLINE", "0"), **env)
    return subprocess.run(hfclf_command(command, *overrides), cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=120)


def api_requests(hub: FakeHub) -> list[str]:
    return [r for r in hub.requests if r.startswith(("/api/datasets", "/datasets/"))]


def test_find_datasets_lists_candidates_with_metadata_and_flags(workdir, hub):
    result = run(workdir, "find-datasets", 'find_datasets.query="customer support"', endpoint=hub.url)
    assert result.returncode == 0, result.stderr

    listing = api_requests(hub)[0]
    assert listing.startswith("/api/datasets?") and "search=customer+support" in listing
    assert "sort=downloads" in listing and "full=true" in listing and "limit=20" in listing

    report = json.loads((workdir / "reports/dataset_candidates.json").read_text())
    by_id = {c["id"]: c for c in report["candidates"]}
    assert [c["id"] for c in report["candidates"]] == [BITEXT, CHATS, MULTI]   # most downloaded first
    bitext = by_id[BITEXT]
    assert (bitext["downloads"], bitext["likes"], bitext["license"]) == (8123, 231, "cdla-sharing-1.0")
    assert bitext["size_category"] == "10K<n<100K" and bitext["languages"] == ["en"]
    assert bitext["last_modified"] == "2024-07-18"
    # its card lists no features: the columns come from the first bytes of its CSV (a Range request)
    assert list(bitext["columns"]) == ["flags", "instruction", "category", "intent", "response"]
    assert bitext["columns_from"].endswith(BITEXT_FILE)
    assert (bitext["text_column"], bitext["label_column"], bitext["classes"]["category"]) == ("instruction", "category", 11)
    assert bitext["flags"] == []
    assert any("/resolve/" in r and BITEXT_FILE in r for r in hub.requests)

    chats = by_id[CHATS]
    assert chats["rows"] == 5000 and chats["license"] is None
    assert chats["flags"] == ["no licence", "no text column", "no label column"]   # flagged, not hidden
    multi = by_id[MULTI]
    assert "2 subsets: pick one" in multi["flags"] and multi["subsets"] == ["en", "fr"]

    markdown = (workdir / "reports/dataset_candidates.md").read_text()
    table = [line for line in markdown.splitlines() if line.startswith(f"| 1 | {BITEXT} ")][0]
    cells = [c.strip() for c in table.strip("|").split("|")]
    assert cells[2:6] == ["8,123", "231", "cdla-sharing-1.0", "10K<n<100K"]
    assert cells[-2:] == ["instruction / category (~11 classes)", "ok"]
    assert f"| 2 | {CHATS} " in markdown and "no licence; no text column; no label column" in markdown
    assert f"make use-dataset ID={BITEXT} LABEL=category TEXT=instruction" in markdown
    assert f"| 1 | {BITEXT} " in result.stdout   # the table is printed too


def test_task_filter_and_exact_card_metadata(workdir, hub):
    result = run(workdir, "find-datasets", "find_datasets.query=support", "find_datasets.task=text-classification",
                 "find_datasets.limit=5", endpoint=hub.url)
    assert result.returncode == 0, result.stderr
    assert "filter=task_categories%3Atext-classification" in api_requests(hub)[0]
    candidates = json.loads((workdir / "reports/dataset_candidates.json").read_text())["candidates"]
    assert [c["id"] for c in candidates] == [TICKETS, MULTI]
    tickets = candidates[0]
    assert tickets["splits"] == {"train": 16000, "test": 4000} and tickets["rows"] == 20000
    assert tickets["columns"]["queue"] == "class_label" and tickets["classes"] == {"queue": 5}
    assert (tickets["text_column"], tickets["label_column"]) == ("body", "queue")
    assert tickets["languages"] == ["en", "de"] and tickets["license"] == "mit" and tickets["flags"] == []
    # a card with features needs no second request: only the search was made for it
    assert not any(TICKETS in r for r in api_requests(hub)[1:])


def test_no_match_says_so(workdir, hub):
    result = run(workdir, "find-datasets", 'find_datasets.query="quantum tickets"', endpoint=hub.url)
    assert result.returncode == 0 and 'matches "quantum tickets"' in result.stdout
    assert "No dataset matched" in (workdir / "reports/dataset_candidates.md").read_text()


def test_use_dataset_pins_the_commit_and_columns_keeping_comments(workdir, hub):
    config = workdir / "conf/data/default.yaml"
    before = config.read_text()
    result = run(workdir, "use-dataset", f"use_dataset.id={BITEXT}", "use_dataset.label_column=category",
                 endpoint=hub.url)
    assert result.returncode == 0, result.stderr
    values = yaml.safe_load(config.read_text())
    pinned = {"source": BITEXT, "revision": "01" * 20, "subset": None,
              "text_column": "instruction", "label_column": "category"}
    assert values == yaml.safe_load(before) | pinned and values["out_of_scope"] is None   # other keys kept
    comments = lambda text: [line.partition("#")[2] for line in text.splitlines()]  # noqa: E731
    assert comments(config.read_text()) == comments(before)
    assert "make all" in result.stdout


def test_use_dataset_with_text_column_subset_and_revision(workdir, hub):
    result = run(workdir, "use-dataset", f"use_dataset.id={MULTI}", "use_dataset.label_column=intent",
                 "use_dataset.text_column=utterance", "use_dataset.subset=fr", f"use_dataset.revision={'04' * 20}",
                 endpoint=hub.url)
    assert result.returncode == 0, result.stderr
    values = yaml.safe_load((workdir / "conf/data/default.yaml").read_text())
    assert (values["source"], values["subset"], values["text_column"]) == (MULTI, "fr", "utterance")
    assert f"/api/datasets/{MULTI}/revision/{'04' * 20}" in hub.requests


@pytest.mark.parametrize("overrides, message", [
    ([f"use_dataset.id={TICKETS}", "use_dataset.label_column=topic"],
     f"ERROR: dataset '{TICKETS}' has no column 'topic'. Its columns (from the card) are: "
     "ticket_id, subject, body, queue, priority."),
    ([f"use_dataset.id={BITEXT}", "use_dataset.label_column=category", "use_dataset.text_column=question"],
     f"has no column 'question'. Its columns (from the first 400 rows of {BITEXT_FILE}) are: "
     "flags, instruction, category, intent, response."),
    ([f"use_dataset.id={BITEXT}-v2", "use_dataset.label_column=category"],
     f"ERROR: dataset '{BITEXT}-v2' was not found on the Hugging Face Hub"),
    ([f"use_dataset.id={MULTI}", "use_dataset.label_column=intent"],
     f"ERROR: dataset '{MULTI}' has 2 subsets (en, fr): pass SUBSET=<name>."),
    ([f"use_dataset.id={TICKETS}", "use_dataset.label_column=queue", "use_dataset.revision=v9"],
     f"ERROR: dataset '{TICKETS}' has no revision 'v9'."),
    (["use_dataset.label_column=queue"], "ERROR: ID is missing: run `make use-dataset ID=owner/name LABEL="),
], ids=["missing-label", "missing-text-from-csv-header", "typo-id", "several-subsets", "bad-revision", "no-id"])
def test_use_dataset_refuses_with_one_line_naming_the_problem(workdir, hub, overrides, message):
    config = workdir / "conf/data/default.yaml"
    before = config.read_text()
    result = run(workdir, "use-dataset", *overrides, endpoint=hub.url)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert config.read_text() == before


@pytest.mark.parametrize("command, overrides", [
    ("find-datasets", ['find_datasets.query="customer support"']),
    ("use-dataset", [f"use_dataset.id={BITEXT}", "use_dataset.label_column=category"]),
])
def test_offline_fails_at_once_without_asking_the_hub(workdir, hub, command, overrides):
    result = run(workdir, command, *overrides, endpoint=hub.url, HF_HUB_OFFLINE="1")
    assert result.returncode == 2
    assert "needs the Hugging Face Hub, but HF_HUB_OFFLINE is set" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert api_requests(hub) == []
    assert not (workdir / "reports/dataset_candidates.md").exists()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("command, overrides", [
    ("find-datasets", ['find_datasets.query="customer support"']),
    ("use-dataset", [f"use_dataset.id={BITEXT}", "use_dataset.label_column=category"]),
])
def test_unreachable_hub_is_one_message_and_no_retries(workdir, command, overrides):
    endpoint = f"http://127.0.0.1:{_free_port()}"   # nothing listens there: connection refused
    result = run(workdir, command, *overrides, endpoint=endpoint)
    assert result.returncode == 2
    assert "ERROR: the Hugging Face Hub could not be reached" in result.stderr
    assert f"cannot connect to {endpoint}" in result.stderr
    assert "Retry" not in result.stderr + result.stdout and "Traceback" not in result.stderr + result.stdout


def test_a_hub_that_never_answers_times_out(workdir):
    """A server that accepts connections and says nothing: the request gives up after timeout_seconds."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)   # the kernel completes the handshakes; nobody ever reads or answers
    try:
        endpoint = f"http://127.0.0.1:{listener.getsockname()[1]}"
        result = run(workdir, "find-datasets", "find_datasets.query=support", "research.timeout_seconds=1",
                     endpoint=endpoint)
    finally:
        listener.close()
    assert result.returncode == 2
    assert f"no answer from {endpoint} within 1 s" in result.stderr
