"""Baking: prompts, validation hooks, rendered files, git/DVC initialisation, local datasets."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from conftest import bake, run
from hfclf import __version__ as VERSION

EXPECTED = ["Makefile", "README.md", "pyproject.toml", "dvc.yaml", ".gitignore", "conf/shared.yaml",
            "conf/prepare.yaml", "conf/train.yaml", "conf/evaluate.yaml", "conf/data/default.yaml",
            "conf/model/default.yaml", "conf/compute/default.yaml", "conf/tracking/default.yaml",
            "conf/paths/default.yaml", ".cruft.json", "src/support_ticket_classifier/__init__.py"]


def rendered_text(project: Path):
    for path in project.rglob("*"):
        if path.is_file() and ".git" not in path.parts and ".dvc" not in path.parts:
            try:
                yield path, path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue


def test_defaults_bake_a_complete_project(cookies):
    project = bake(cookies)
    assert project.name == "support-ticket-classifier"
    for name in EXPECTED:
        assert (project / name).is_file(), name
    # the pipeline's code is the pinned library, not a copy: the package holds only the user's code
    assert not (project / "src" / "support_ticket_classifier" / "stages").exists()
    assert f'dependencies = ["hfclf=={VERSION}"]' in (project / "pyproject.toml").read_text()
    for path, text in rendered_text(project):
        assert "{{" not in text and "{%" not in text, f"unrendered Jinja in {path}"
    data_conf = (project / "conf/data/default.yaml").read_text()
    assert 'source: "bitext/Bitext-customer-support-llm-chatbot-training-dataset"' in data_conf
    assert 'label_column: "category"' in data_conf
    # git and DVC are initialised and everything is committed
    assert (project / ".git").is_dir() and (project / ".dvc").is_dir()
    log = subprocess.run(["git", "log", "--oneline"], cwd=project, capture_output=True, text=True).stdout
    assert len(log.strip().splitlines()) == 1
    status = subprocess.run(["git", "status", "--porcelain"], cwd=project, capture_output=True, text=True)
    assert status.stdout.strip() == ""


def test_custom_answers_flow_into_names(cookies):
    project = bake(cookies, project_name="Churn Radar", text_column="body", label_column="reason",
                   dataset="acme/tickets", hub_repo_id="acme/churn-radar", license="mit")
    assert project.name == "churn-radar"
    assert (project / "src" / "churn_radar" / "__init__.py").is_file()
    assert "cmd: hfclf train" in (project / "dvc.yaml").read_text()
    conf = (project / "conf/data/default.yaml").read_text()
    assert 'text_column: "body"' in conf and 'label_column: "reason"' in conf
    assert 'name = "churn-radar"' in (project / "pyproject.toml").read_text()


@pytest.mark.parametrize("answers, variable, words", [
    ({"project_slug": "Bad Slug!"}, "project_slug", "not a valid slug"),
    ({"package_name": "9lives"}, "package_name", "not a valid package name"),
    ({"package_name": "torch"}, "package_name", "shadow"),
    ({"dataset": "data/does-not-exist.csv"}, "dataset", "does not exist"),
    ({"text_column": "body"}, "text_column", "column 'body' is not in"),
    ({"label_column": "topic"}, "label_column", "Its columns are: instruction, category, intent, tags"),
    ({"label_column": "instruction"}, "label_column", "also the text_column"),
    ({"hub_repo_id": "not a repo"}, "hub_repo_id", "not a Hub repo id"),
])
def test_bad_answers_are_rejected_with_the_variable_named(cookies, bitext_csv, capfd, answers, variable, words):
    context = {"dataset": str(bitext_csv), **answers}
    result = cookies.bake(extra_context=context)
    assert result.exit_code != 0
    err = capfd.readouterr().err
    assert f"ERROR: {variable}:" in err and words in err, err


def test_empty_and_undecodable_files_are_rejected(cookies, tmp_path, capfd):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert cookies.bake(extra_context={"dataset": str(empty)}).exit_code != 0
    assert "is empty" in capfd.readouterr().err
    latin = tmp_path / "latin.csv"
    latin.write_bytes("instruction,category\ncaf\xe9 order,ORDER\n".encode("latin-1"))
    assert cookies.bake(extra_context={"dataset": str(latin)}).exit_code != 0
    assert "not UTF-8" in capfd.readouterr().err


def write_formats(bitext_csv: Path, folder: Path) -> dict[str, Path]:
    """The Bitext sample (first 300 rows) as TSV, JSONL, Parquet and a save_to_disk folder."""
    import datasets

    frame = pd.read_csv(bitext_csv).head(300)
    paths = {"tsv": folder / "tickets.tsv", "jsonl": folder / "tickets.jsonl",
             "parquet": folder / "tickets.parquet", "save_to_disk": folder / "tickets_ds"}
    frame.to_csv(paths["tsv"], sep="\t", index=False)
    frame.to_json(paths["jsonl"], orient="records", lines=True)
    frame.to_parquet(paths["parquet"], index=False)
    datasets.Dataset.from_pandas(frame).save_to_disk(str(paths["save_to_disk"]))
    return paths


@pytest.mark.parametrize("kind", ["csv", "tsv", "jsonl", "parquet", "save_to_disk"])
def test_local_dataset_is_copied_and_tracked_by_dvc_not_git(cookies, bitext_csv, tmp_path, kind):
    source = bitext_csv if kind == "csv" else write_formats(bitext_csv, tmp_path)[kind]
    project = bake(cookies, dataset=str(source))
    copied = project / "data" / "raw" / source.name
    assert copied.exists()
    assert (project / "data" / "raw" / f"{source.name}.dvc").is_file()
    assert f'source: "data/raw/{source.name}"' in (project / "conf/data/default.yaml").read_text()
    tracked = subprocess.run(["git", "ls-files"], cwd=project, capture_output=True, text=True).stdout.split()
    assert f"data/raw/{source.name}.dvc" in tracked
    assert not any(t == f"data/raw/{source.name}" or t.startswith(f"data/raw/{source.name}/") for t in tracked)


def test_relative_dataset_path_resolves_from_where_cookiecutter_runs(tmp_path, bitext_csv):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "tickets.csv").write_bytes(bitext_csv.read_bytes())
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PWD": str(tmp_path)}
    result = subprocess.run(["cookiecutter", str(root), "--no-input", "-o", str(tmp_path / "out"),
                             "dataset=in/tickets.csv"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "support-ticket-classifier" / "data" / "raw" / "tickets.csv").exists()


def test_first_commit_works_without_a_global_git_identity(tmp_path, bitext_csv):
    root = Path(__file__).resolve().parents[1]
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(HOME=str(home), GIT_CONFIG_GLOBAL=str(home / "none"), GIT_CONFIG_NOSYSTEM="1")
    result = subprocess.run(["cookiecutter", str(root), "--no-input", "-o", str(tmp_path / "out"),
                             f"dataset={bitext_csv}"], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    project = tmp_path / "out" / "support-ticket-classifier"
    log = subprocess.run(["git", "log", "--format=%an"], cwd=project, capture_output=True, text=True, env=env)
    assert log.stdout.strip() == "Your Name"


def test_make_help_lists_every_target_with_a_line(cookies):
    project = bake(cookies)
    out = run(["make", "help"], project).stdout
    makefile = (project / "Makefile").read_text()
    targets = re.findall(r"^([a-zA-Z_-]+):.*?## ", makefile, flags=re.M)
    for target in targets:
        assert f" {target} " in out, target
    for needed in ("install", "prepare", "train", "evaluate", "all", "ui", "test", "clean"):
        assert needed in targets


def test_root_requirements_cover_the_generated_projects_dependencies(cookies):
    """Baked projects reuse the template's environment, so it must hold all they need."""
    import tomllib

    project = bake(cookies)
    deps = tomllib.loads((project / "pyproject.toml").read_text())["project"]["dependencies"]
    root = Path(__file__).resolve().parents[1]
    lines = [line for line in (root / "requirements.txt").read_text().splitlines()
             if line and not line.startswith("#")]
    ours = {line.split(">")[0].split("=")[0].strip().lower().replace("_", "-") for line in lines}
    if any(line.startswith("-e ./hfclf") for line in lines):
        ours.add("hfclf")   # the library, editable from this checkout
    for dep in deps:
        name = dep.split(">")[0].split("=")[0].split("[")[0].strip().lower().replace("_", "-")
        assert name in ours or name == "torch", f"{name} is missing from requirements.txt"


def test_offline_hub_dataset_stops_at_once_saying_to_pass_a_local_file(cookies):
    project = bake(cookies)   # default answers: the Hub dataset
    result = run(["hfclf", "prepare"], project, check=False)
    assert result.returncode == 2
    assert "bitext/Bitext-customer-support-llm-chatbot-training-dataset" in result.stderr
    assert "make example DATA=path/to/data.csv" in result.stderr and "Traceback" not in result.stderr
    assert not (project / "data" / "processed").exists()


def test_root_example_target_bakes_with_the_given_data(tmp_path):
    root = Path(__file__).resolve().parents[1]
    plan = subprocess.run(["make", "-n", "example", "DATA=../shared/data/bitext/customer_support_sample.csv",
                           f"EXAMPLE_DIR={tmp_path}"], cwd=root, capture_output=True, text=True).stdout
    assert f"dataset={(root / '../shared/data/bitext/customer_support_sample.csv').resolve()}" in plan
    assert re.search(r"-C \S+support-ticket-classifier (install )?all\b", plan), plan


def test_cruft_json_records_the_template_checkout_and_commit(cookies):
    """A plain cookiecutter bake writes what `cruft create` would: `make install` and `make update` read it."""
    import json

    project = bake(cookies)
    state = json.loads((project / ".cruft.json").read_text())
    root = Path(__file__).resolve().parents[1]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
    assert (state["template"], state["commit"], state["directory"]) == (str(root), head, None)
    context = state["context"]["cookiecutter"]
    assert context["_hfclf_version"] == VERSION and context["_commit"] == head
    assert not {"_repo_dir", "_output_dir", "_checkout"} & set(context)
    tracked = subprocess.run(["git", "ls-files"], cwd=project, capture_output=True, text=True).stdout.split()
    assert ".cruft.json" in tracked


def test_cruft_create_bakes_a_clean_first_commit_holding_its_cruft_json(tmp_path):
    """`cruft create` writes .cruft.json after the hooks; the hook already committed the same bytes.
    (cruft clones the template, so this bakes the checkout's last commit.)"""
    template = tmp_path / "template"
    subprocess.run(["git", "clone", "-q", str(Path(__file__).resolve().parents[1]), str(template)], check=True)
    result = subprocess.run(["cruft", "create", "--no-input", str(template), "--output-dir", str(tmp_path / "out")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    project = tmp_path / "out" / "support-ticket-classifier"
    status = subprocess.run(["git", "status", "--porcelain"], cwd=project, capture_output=True, text=True)
    assert status.stdout.strip() == "", status.stdout   # cruft rewrote identical content


HOSTILE_AUTHOR = "Zoë \"Z\" O'Neil \\ ''' {x}"
HOSTILE_DESCRIPTION = "Labels \"tickets\" \\ ''' for ACME"


def test_answers_with_quotes_and_backslashes_are_data(cookies):
    import tomllib

    project = bake(cookies, project_name="O'Brien's Radar", project_slug="obrien-radar", author_name=HOSTILE_AUTHOR,
                   description=HOSTILE_DESCRIPTION)
    meta = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    assert meta["authors"][0]["name"] == HOSTILE_AUTHOR
    assert meta["description"] == HOSTILE_DESCRIPTION


@pytest.mark.parametrize("answers, variable", [
    ({"project_name": "two\nlines"}, "project_name"),
    ({"description": "tab\there"}, "description"),
    ({"project_name": "back\\slash"}, "project_name"),
])
def test_answers_that_cannot_be_rendered_safely_get_a_named_error(cookies, capfd, answers, variable):
    result = cookies.bake(extra_context=answers)
    assert result.exit_code != 0
    err = capfd.readouterr().err
    assert f"ERROR: {variable}:" in err and "SyntaxError" not in err, err
