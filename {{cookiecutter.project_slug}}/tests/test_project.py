"""This project's own checks (seconds, no training): the library it runs is the pinned one, every
command's config composes, dvc.yaml is the library's contract, and your code in
src/{{ cookiecutter.package_name }}/ imports. The library's behaviour is tested where it lives (hfclf/tests)."""
from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.stem for p in (PROJECT / "conf").glob("*.yaml") if p.stem != "shared")


def test_installed_library_is_the_pinned_one():
    import hfclf

    pin = tomllib.loads((PROJECT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["hfclf"]["version"]
    assert hfclf.__version__ == pin, f"run `make install`: this project pins hfclf {pin}"


@pytest.mark.parametrize("config", CONFIGS)
def test_every_config_composes(config):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(PROJECT / "conf"), version_base=None):
        cfg = compose(config_name=config)
    assert cfg.paths.processed and cfg.model.name and cfg.data.text_column


def test_dvc_yaml_is_the_library_contract():
    result = subprocess.run([sys.executable, "-m", "hfclf", "contract"], cwd=PROJECT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr or result.stdout


def test_your_code_imports():
    sys.path.insert(0, str(PROJECT / "src"))
    import {{ cookiecutter.package_name }}.data, {{ cookiecutter.package_name }}.model  # noqa: E401  (the hooks conf/ can name)
