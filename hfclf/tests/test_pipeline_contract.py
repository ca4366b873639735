"""The DVC contract (hfclf.pipeline, hfclf.contract): the table, its rendering and the checker - fast, no DVC run."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from hfclf import contract, pipeline
from hfclf.infra.user_code import user_hook
from hfclf.preflight.gates import gate_digest

TEMPLATE_DVC = Path(__file__).resolve().parents[2] / "{{cookiecutter.project_slug}}" / "dvc.yaml"
PLACEHOLDER = "{{ cookiecutter.package_name }}"


def stages(package: str = "pkg") -> dict:
    return yaml.safe_load(contract.render(package))["stages"]


def test_the_template_dvc_yaml_is_the_rendering():
    assert TEMPLATE_DVC.read_text(encoding="utf-8") == contract.render(PLACEHOLDER), \
        contract.unified_diff(TEMPLATE_DVC.read_text(encoding="utf-8"), PLACEHOLDER)


def test_every_stage_runs_hfclf_and_pins_the_library_version():
    rendered = stages()
    assert list(rendered) == ["prepare", "review", "smoke", "plan", "train", "evaluate", "analyze", "register", "card"]
    for name, spec in rendered.items():
        assert spec["cmd"] == f"hfclf {name}"
        assert {"pyproject.toml": ["tool.hfclf.version"]} in spec["params"], name


def test_user_code_is_a_dep_only_where_it_runs():
    users = {name: sorted(d for d in spec.get("deps", []) if d.startswith("src/")) for name, spec in stages().items()}
    assert {name: deps for name, deps in users.items() if deps} == {
        "prepare": ["src/pkg/data.py"], "smoke": ["src/pkg/model.py"], "train": ["src/pkg/model.py"]}


def test_train_waits_for_gates_not_timing_reports():
    train = stages()["train"]
    assert "reports/gates/smoke.json" in train["deps"] and "reports/gates/plan.json" in train["deps"]
    assert not {"reports/smoke.json", "reports/training_plan.json"} & set(train["deps"])
    params = {file: keys for item in train["params"] for file, keys in item.items()}
    assert "conf/smoke.yaml" not in params and "conf/plan.yaml" not in params


def test_a_matching_dvc_yaml_has_no_differences():
    assert contract.differences(stages("pkg"), "pkg") == []


@pytest.mark.parametrize("edit, expected", [
    (lambda s: s["train"]["deps"].remove("reports/gates/plan.json"), "train.deps: missing reports/gates/plan.json"),
    (lambda s: s["train"]["deps"].append("reports/smoke.json"), "train.deps: not in the contract: reports/smoke.json"),
    (lambda s: s["smoke"]["params"][1]["conf/smoke.yaml"].append("smoke.steps"),
     "smoke.params: conf/smoke.yaml: not in the contract: smoke.steps"),
    (lambda s: s["prepare"]["params"].pop(0), "prepare.params: pyproject.toml: missing tool.hfclf.version"),
    (lambda s: s["review"].update(cmd="python -m review"), "review.cmd: is 'python -m review'"),
    (lambda s: s.pop("card"), "card: stage missing"),
    (lambda s: s["evaluate"]["outs"].pop(), "evaluate.outs: missing reports/predictions.parquet"),
    (lambda s: s["evaluate"]["metrics"][0]["reports/metrics.json"].update(cache=True),
     "evaluate.metrics: reports/metrics.json: options {'cache': True}, the contract says {'cache': False}"),
])
def test_each_difference_names_stage_and_key(edit, expected):
    actual = stages("pkg")
    edit(actual)
    problems = contract.differences(actual, "pkg")
    assert any(p.startswith(expected) for p in problems), problems


def write_conf(root: Path) -> None:
    """Files holding every param key of the contract (each key set to 1)."""
    for stage in pipeline.STAGES:
        for file, keys in stage.all_params():
            path = root / file
            path.parent.mkdir(parents=True, exist_ok=True)
            content = (yaml.safe_load(path.read_text()) if path.exists() and file.endswith(".yaml") else None) or {}
            if file.endswith(".toml"):
                path.write_text('[tool.hfclf]\nversion = "1"\n')
                continue
            for key in keys:
                node = content
                *parents, last = key.split(".")
                for part in parents:
                    node = node.setdefault(part, {})
                if not isinstance(node.get(last), dict):   # a section another stage reads key by key
                    node[last] = 1
            path.write_text(yaml.safe_dump(content))


def test_contract_command_checks_and_writes(tmp_path, monkeypatch, capsys):
    write_conf(tmp_path)
    (tmp_path / "src" / "my_pkg").mkdir(parents=True)
    (tmp_path / "src" / "my_pkg" / "__init__.py").write_text("")
    dvc_yaml = tmp_path / "dvc.yaml"
    dvc_yaml.write_text(contract.render("my_pkg").replace("src/my_pkg/data.py", "src/data.py"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        contract.main([])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "prepare.deps: missing src/my_pkg/data.py" in err and "prepare.deps: not in the contract: src/data.py" in err

    text = dvc_yaml.read_text() + "  mine:\n    cmd: echo hi\n"   # a stage of the user's own survives --write
    dvc_yaml.write_text(text)
    contract.main(["--write"])
    written = yaml.safe_load(dvc_yaml.read_text())["stages"]
    assert written["mine"] == {"cmd": "echo hi"}
    assert dvc_yaml.read_text().startswith(contract.render("my_pkg"))
    contract.main([])
    assert "matches the contract" in capsys.readouterr().out


def test_user_hook_errors_are_one_line(tmp_path, monkeypatch):
    from hfclf.infra.errors import UserError

    (tmp_path / "src" / "hookpkg_x").mkdir(parents=True)
    (tmp_path / "src" / "hookpkg_x" / "__init__.py").write_text("")
    (tmp_path / "src" / "hookpkg_x" / "data.py").write_text("def load(source):\n    return source\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", list(__import__("sys").path))
    assert user_hook(None, "data.loader") is None
    assert user_hook("hookpkg_x.data.load", "data.loader")("x") == "x"
    with pytest.raises(UserError, match=r"data.clean='hookpkg_x.data.clean' does not import: module 'hookpkg_x.data' has no function 'clean'"):
        user_hook("hookpkg_x.data.clean", "data.clean")
    with pytest.raises(UserError, match=r"model.builder='nowhere_pkg.model.build' does not import: ModuleNotFoundError"):
        user_hook("nowhere_pkg.model.build", "model.builder")


def test_a_mismatched_pin_is_refused(tmp_path):
    from hfclf import __version__
    from hfclf.infra import cli
    from hfclf.infra.errors import UserError

    (tmp_path / "pyproject.toml").write_text('[tool.hfclf]\nversion = "0.0.1"\n')
    with pytest.raises(UserError) as err:
        cli.check_version(tmp_path)
    assert str(err.value) == f"this project pins hfclf 0.0.1, installed {__version__}: run `make install`"
    (tmp_path / "pyproject.toml").write_text(f'[tool.hfclf]\nversion = "{__version__}"\n')
    cli.check_version(tmp_path)


def test_a_param_key_missing_from_conf_is_named(tmp_path):
    write_conf(tmp_path)
    assert contract.missing_params(tmp_path) == []
    model = tmp_path / "conf" / "model" / "default.yaml"
    model.write_text(model.read_text().replace("builder: 1\n", ""))
    assert contract.missing_params(tmp_path) == ["smoke.params: conf/model/default.yaml: has no key builder",
                                                 "train.params: conf/model/default.yaml: has no key builder"]


def test_plan_gate_ignores_timings_and_follows_approval_of_the_settings_and_the_epoch_bound(tmp_path):
    from hfclf.preflight import plan

    settings = {"max_epochs": "auto", "max_length": "auto", "model": "m", "data_fingerprint": "abc"}

    def planned(bound: int, length: int = 256) -> dict:
        return {"settings": settings, "training": {"epochs": bound}, "model": {"max_length": length}}

    (tmp_path / plan.PLAN_MD).write_text("# Training plan\n12 train examples per second\n")
    first = plan.write_gate(tmp_path, planned(10)).read_bytes()
    assert json.loads(first) == {"settings": settings, "settings_sha256": gate_digest(settings), "epoch_bound": 10,
                                 "max_length": 256, "approved": False}
    (tmp_path / plan.PLAN_MD).write_text("# Training plan\n13 train examples per second\n")   # re-measured
    assert plan.write_gate(tmp_path, planned(10)).read_bytes() == first
    # re-measured so that max_epochs=auto resolves to another bound: training changes, so does the gate
    assert json.loads(plan.write_gate(tmp_path, planned(7)).read_bytes())["epoch_bound"] == 7
    # ... or so that max_length=auto resolves to another length (fewer epochs fit at 512 than at 256)
    assert json.loads(plan.write_gate(tmp_path, planned(10, 128)).read_bytes())["max_length"] == 128
    plan.approve(tmp_path, settings)
    assert json.loads(plan.write_gate(tmp_path, planned(10)).read_bytes())["approved"] is True
    (tmp_path / plan.PLAN_MD).write_text("# Training plan\n14 train examples per second\n")   # still these settings
    assert json.loads(plan.write_gate(tmp_path, planned(10)).read_bytes())["approved"] is True
    other = {"settings": {**settings, "max_epochs": 3}, "training": {"epochs": 3}, "model": {"max_length": 256}}
    assert json.loads(plan.write_gate(tmp_path, other).read_bytes())["approved"] is False


def test_train_resolves_auto_epochs_from_the_plan_under_its_own_budget():
    from hfclf.infra.errors import UserError
    from hfclf.preflight import plan

    planned = {"estimate": {"seconds_per_epoch": 105.0, "overhead_seconds": 20}, "training": {"steps_per_epoch": 67}}
    assert plan.epoch_bound("auto", planned, 30) == 10     # 16.9 epochs fit: the cap
    assert plan.epoch_bound("auto", planned, 10) == 5      # `hfclf train compute.max_minutes=10`: 5.5 fit
    # train.min_steps=1500 on 67 steps per epoch: up to 23 epochs, so the budget decides (16.9 fit) ...
    assert plan.epoch_bound("auto", planned, 30, 1500) == 16 and plan.epoch_bound("auto", planned, 60, 1500) == 23
    # ... while 500 steps (7.5 epochs) leave the cap at 10
    assert plan.epoch_bound("auto", planned, 60, 500) == 10
    assert plan.epoch_bound(3, None, 30) == 3              # a number needs no plan
    with pytest.raises(UserError, match="run `make plan`"):
        plan.epoch_bound("auto", None, 30)


def test_smoke_gate_holds_checks_not_numbers():
    from hfclf.preflight import smoke

    report = {"passed": True, "seconds": 3.2, "losses": [1.0, 0.5], "train_examples_per_second": 80.0,
              "checks": [{"check": "loss is finite", "passed": True, "detail": "9 steps"},
                         {"check": "loss decreases", "passed": True, "detail": "1.1 → 0.5"}]}
    assert smoke.gate(report) == {"passed": True, "checks": ["loss is finite", "loss decreases"]}
