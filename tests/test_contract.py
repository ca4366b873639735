"""dvc.yaml is an exact contract (issue #13, item 5), proven with the real DVC on a baked project.

One project, baked on a 60-row, 3-class CSV and fine-tuning a tiny BERT built here (2 layers,
hidden size 32, the packaged MiniLM tokenizer), runs its whole pipeline once; then each test
changes one thing and asks DVC what is out of date:

- a smoke.* value re-runs smoke and plan but leaves train up to date (gates hold no timings);
- an edit of src/<pkg>/model.py re-runs smoke and train, of src/<pkg>/data.py prepare, only;
- a new [tool.hfclf] version puts every stage out of date, and no stage runs under a mismatch;
- the template's dvc.yaml is the rendering of hfclf.pipeline's table (hfclf.contract; `hfclf contract` exits 0);
- the user-code hooks (data.loader / data.clean / model.builder), switched on by dotted path,
  run in the pipeline (a path that does not import: hfclf/tests/test_pipeline_contract.py).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import ROOT, run, set_param, tiny_project

PACKAGE = "contract_demo"
STAGES = {"prepare", "review", "smoke", "plan", "train", "evaluate", "analyze", "register", "card"}


def status(project: Path) -> dict:
    """`dvc status --json`: stage -> what changed (empty when everything is up to date)."""
    out = run(["dvc", "status", "--json"], project).stdout
    return json.loads(out[out.index("{"):]) if "{" in out else {}


def ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([\w-]+)'", output))


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    project = tiny_project(tmp_path_factory.mktemp("contract"), "Contract Demo", max_epochs=2)
    assert (project / "src" / PACKAGE / "model.py").exists()
    # a fresh bake's dvc.yaml is exactly the derived contract
    checked = run(["hfclf", "contract"], project)
    assert "matches the contract" in checked.stdout
    # the user-code hooks, switched on by dotted path: the whole pipeline runs through them
    set_param(project / "conf" / "data" / "default.yaml", "loader", f"{PACKAGE}.data.load")
    set_param(project / "conf" / "data" / "default.yaml", "clean", f"{PACKAGE}.data.clean")
    set_param(project / "conf" / "model" / "default.yaml", "builder", f"{PACKAGE}.model.build")
    result = run(["dvc", "repro"], project, timeout=900)
    assert ran(result.stdout) == STAGES, result.stdout[-3000:]
    assert (result.stdout + result.stderr).count(f"built by {PACKAGE}.model.build") == 2   # smoke and train
    assert status(project) == {}
    return project


def test_template_dvc_yaml_is_the_rendered_contract():
    from hfclf import contract

    template = (ROOT / "{{cookiecutter.project_slug}}" / "dvc.yaml").read_text(encoding="utf-8")
    assert template == contract.render("{{ cookiecutter.package_name }}"), contract.unified_diff(
        template, "{{ cookiecutter.package_name }}")


def test_user_code_hooks_are_reached_by_dotted_path(project):
    source = json.loads((project / "data" / "processed" / "labels.json").read_text())["source"]
    assert source["loader"] == f"{PACKAGE}.data.load" and source["clean"] == f"{PACKAGE}.data.clean"


def test_gates_hold_no_timings(project):
    smoke_gate = json.loads((project / "reports" / "gates" / "smoke.json").read_text())
    assert smoke_gate == {"passed": True, "checks": [
        "model loads", "loss is finite", "loss decreases", "evaluation runs", "save and reload",
        "identical predictions after reload", "label mapping round-trip"]}
    plan_gate = json.loads((project / "reports" / "gates" / "plan.json").read_text())
    assert set(plan_gate) == {"settings", "settings_sha256", "epoch_bound", "max_length", "approved"}
    assert plan_gate["approved"] is False and plan_gate["settings"]["max_epochs"] == 2
    assert plan_gate["epoch_bound"] == 2   # a number set is the bound; auto: a whole number of epochs, never a timing
    # model.max_length=auto as resolved: a number of tokens (Bitext's tickets all fit in the 128 floor)
    assert plan_gate["settings"]["max_length"] == "auto" and plan_gate["max_length"] == 128


def test_a_smoke_setting_reruns_smoke_and_plan_not_train(project):
    set_param(project / "conf" / "smoke.yaml", "max_seconds", "119")
    assert set(status(project)) == {"smoke"}
    result = run(["dvc", "repro"], project)
    assert ran(result.stdout) == {"smoke", "plan"}, result.stdout[-3000:]   # new timings, same gates
    assert status(project) == {}


def edited(path: Path):
    original = path.read_text(encoding="utf-8")
    path.write_text(original + "\n# an edit of the user's code\n", encoding="utf-8")
    return original


def test_b_user_model_code_is_a_dep_of_smoke_and_train_only(project):
    path = project / "src" / PACKAGE / "model.py"
    original = edited(path)
    try:
        changed = status(project)
        assert set(changed) == {"smoke", "train"}
        assert all(f"src/{PACKAGE}/model.py" in json.dumps(changed[s]) for s in changed)
    finally:
        path.write_text(original, encoding="utf-8")
    assert status(project) == {}


def test_c_user_data_code_is_a_dep_of_prepare_only(project):
    path = project / "src" / PACKAGE / "data.py"
    original = edited(path)
    try:
        assert set(status(project)) == {"prepare"}
    finally:
        path.write_text(original, encoding="utf-8")


def test_d_e_a_new_library_version_reruns_everything_and_a_mismatch_runs_nothing(project):
    pyproject = project / "pyproject.toml"
    original = pyproject.read_text(encoding="utf-8")
    pyproject.write_text(re.sub(r'(\[tool\.hfclf\]\n(?:#.*\n)*version = )"[^"]*"', r'\1"9.9.9"', original),
                         encoding="utf-8")
    profile = project / "reports" / "data_profile.json"
    before = profile.stat().st_mtime_ns
    try:
        changed = status(project)
        assert set(changed) == STAGES
        assert all("tool.hfclf.version" in json.dumps(changed[s]) for s in STAGES)
        for command in ("prepare", "train"):
            refused = run(["hfclf", command], project, check=False)
            assert refused.returncode == 2
            from hfclf import __version__
            assert refused.stderr.strip() == (f"ERROR: this project pins hfclf 9.9.9, installed {__version__}: "
                                               "run `make install`")
        assert profile.stat().st_mtime_ns == before
    finally:
        pyproject.write_text(original, encoding="utf-8")
    assert status(project) == {}


def test_f_contract_names_stage_and_key_on_a_mismatch(project):
    dvc_yaml = project / "dvc.yaml"
    original = dvc_yaml.read_text(encoding="utf-8")
    dvc_yaml.write_text(original.replace("      - reports/gates/smoke.json", "      - reports/smoke.json"),
                        encoding="utf-8")
    try:
        result = run(["hfclf", "contract"], project, check=False)
        assert result.returncode == 2
        assert "train.deps: missing reports/gates/smoke.json" in result.stderr
        assert "train.deps: not in the contract: reports/smoke.json" in result.stderr
        run(["hfclf", "contract", "--write"], project)
        assert dvc_yaml.read_text(encoding="utf-8") == original
    finally:
        dvc_yaml.write_text(original, encoding="utf-8")
