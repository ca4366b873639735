"""`make update`: a project baked from template commit A takes commit B (skeleton and library pin)
through cruft, keeps the user's committed edits, and shows a clash as a conflict.

The template is a throwaway git repository holding a copy of this working tree; the bake uses
its local path, exactly as a user with a local checkout would.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import BITEXT_CSV, set_param
from hfclf import __version__ as VERSION

NEXT = ".".join(VERSION.split(".")[:2] + [str(int(VERSION.split(".")[2]) + 1)])   # the bump template B makes

ROOT = Path(__file__).resolve().parents[1]
SKELETON = "{{cookiecutter.project_slug}}"
IDENTITY = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}


def sh(cmd: list[str], cwd: Path, check: bool = True, **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "HFCLF_BAKE"))}
    full_env.update(IDENTITY, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                    DVC_NO_ANALYTICS="1")
    full_env.update(env)
    result = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=300)
    if check and result.returncode != 0:
        pytest.fail(f"`{' '.join(cmd)}` exited {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def commit(repo: Path, message: str) -> str:
    sh(["git", "add", "--all"], repo)
    sh(["git", "commit", "--quiet", "-m", message], repo)
    return sh(["git", "rev-parse", "HEAD"], repo).stdout.strip()


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def bump_library(template: Path, version: str) -> None:
    """Move the pin and the library version together, as a release of the template does."""
    spec = template / "cookiecutter.json"
    spec.write_text(re.sub(r'"_hfclf_version": "[^"]+"', f'"_hfclf_version": "{version}"',
                           spec.read_text(encoding="utf-8")), encoding="utf-8")
    init = template / "hfclf" / "src" / "hfclf" / "__init__.py"
    init.write_text(re.sub(r'__version__ = "[^"]+"', f'__version__ = "{version}"',
                           init.read_text(encoding="utf-8")), encoding="utf-8")


@pytest.fixture()
def template_a(tmp_path) -> tuple[Path, str]:
    """A git repository holding this working tree (tracked and new files), committed: commit A."""
    template = tmp_path / "template"
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file() and not name.startswith(("bench/", "tests/")):
            (template / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, template / name)
    sh(["git", "init", "--quiet", "--initial-branch=main"], template)
    return template, commit(template, "template A")


def bake_from(template: Path, out: Path) -> Path:
    sh(["cookiecutter", str(template), "--no-input", "-o", str(out), f"dataset={BITEXT_CSV}"], out.parent)
    return out / "support-ticket-classifier"


def pin_of(project: Path) -> tuple[str, str]:
    text = (project / "pyproject.toml").read_text(encoding="utf-8")
    return (re.search(r'"hfclf==([^"]+)"', text).group(1),
            re.search(r'^\[tool\.hfclf\][^\[]*?^version = "([^"]+)"', text, flags=re.M | re.S).group(1))


def test_update_takes_template_changes_and_pin_and_keeps_user_edits(tmp_path, template_a):
    template, commit_a = template_a
    (tmp_path / "out").mkdir()
    project = bake_from(template, tmp_path / "out")
    cruft = json.loads((project / ".cruft.json").read_text())
    assert (cruft["template"], cruft["commit"]) == (str(template), commit_a)
    assert pin_of(project) == (VERSION, VERSION)

    # the user's committed edits: a config value and their own code
    set_param(project / "conf" / "train.yaml", "batch_size", "8")
    package = project / "src" / "support_ticket_classifier"
    (package / "data.py").write_text('def clean(text):\n    return text.strip()\n', encoding="utf-8")
    with (package / "__init__.py").open("a", encoding="utf-8") as handle:
        handle.write("USER_MARK = 1\n")
    commit(project, "my edits")

    # template commit B: skeleton changes (one in the file the user edited) and a new library version
    skeleton = template / SKELETON
    with (skeleton / "Makefile").open("a", encoding="utf-8") as handle:
        handle.write("# template B: a new Makefile line\n")
    with (skeleton / "conf" / "train.yaml").open("a", encoding="utf-8") as handle:
        handle.write("# template B: a note at the end of train.yaml\n")
    bump_library(template, NEXT)
    commit_b = commit(template, "template B")

    # a dirty tree is refused, with the reason
    (project / "README.md").write_text("uncommitted\n", encoding="utf-8")
    refused = sh(["make", "update"], project, check=False)
    assert refused.returncode != 0 and "uncommitted changes" in refused.stderr, refused.stderr
    sh(["git", "checkout", "--", "README.md"], project)

    result = sh(["make", "update"], project)      # stdin is not a terminal: no questions
    assert "--skip-apply-ask" in result.stdout
    assert f"hfclf pin: version = \"{VERSION}\" -> version = \"{NEXT}\"" in result.stdout, result.stdout
    assert "# template B: a new Makefile line" in (project / "Makefile").read_text()
    train = (project / "conf" / "train.yaml").read_text()
    assert "# template B: a note at the end of train.yaml" in train
    assert re.search(r"^\s*batch_size: 8\b", train, flags=re.M), "the user's config edit was lost"
    assert (package / "data.py").is_file() and "USER_MARK = 1" in (package / "__init__.py").read_text()
    assert pin_of(project) == (NEXT, NEXT)
    cruft = json.loads((project / ".cruft.json").read_text())
    assert cruft["commit"] == commit_b
    assert cruft["context"]["cookiecutter"]["_hfclf_version"] == NEXT
    # only what the template changed is touched: no render artefacts, nothing left to resolve
    changed = set(sh(["git", "status", "--porcelain"], project).stdout.split())
    assert not any(name.endswith(".rej") for name in changed)
    assert {".cruft.json", "Makefile", "conf/train.yaml", "pyproject.toml"} <= changed, changed
    assert not (project / ".local-dataset").exists() and "data/raw/.gitignore" not in changed

    # a second update with nothing new changes nothing
    commit(project, "template B taken")
    sh(["make", "update"], project)
    assert sh(["git", "status", "--porcelain"], project).stdout.strip() == ""


def test_update_shows_a_clash_as_a_conflict_not_a_silent_loss(tmp_path, template_a):
    template, _ = template_a
    (tmp_path / "out").mkdir()
    project = bake_from(template, tmp_path / "out")
    set_param(project / "conf" / "train.yaml", "learning_rate", "1.0e-5")   # the user's choice
    commit(project, "my learning rate")
    set_param(template / SKELETON / "conf" / "train.yaml", "learning_rate", "7.0e-4")  # the template's
    commit(template, "template: new default learning rate")

    result = sh(["make", "update"], project, check=False)
    assert result.returncode != 0, result.stdout + result.stderr
    assert "conflict" in result.stderr and "conf/train.yaml" in result.stderr, result.stderr
    train = (project / "conf" / "train.yaml").read_text()
    rejected = project / "conf" / "train.yaml.rej"
    if rejected.exists():     # cruft's fallback when git cannot merge three-way: the hunk is kept aside
        assert "7.0e-4" in rejected.read_text() and "1.0e-5" in train
    else:                     # git apply -3: both sides in the file, marked, and the path unmerged
        assert "<<<<<<<" in train and "1.0e-5" in train and "7.0e-4" in train, train
        unmerged = sh(["git", "diff", "--name-only", "--diff-filter=U"], project).stdout.split()
        assert unmerged == ["conf/train.yaml"]


@pytest.mark.slow   # ~30 s: pip builds the library from the template's git history
def test_make_install_installs_the_pinned_library_from_the_local_checkout(tmp_path, template_a):
    """`make install` in a project baked from a local git checkout installs hfclf from that checkout
    at the recorded commit (git+file, offline) and checks the installed version against the pin.

    A throwaway venv sees this environment's packages through a .pth file (torch etc. are not
    installed again); PIP_ARGS=--no-deps keeps pip from touching them."""
    import site
    import sysconfig

    template, commit_a = template_a
    (tmp_path / "out").mkdir()
    project = bake_from(template, tmp_path / "out")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    python = venv / "bin" / "python"
    inner = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                           capture_output=True, text=True, check=True).stdout.strip()
    outer = sysconfig.get_paths()["purelib"]
    (Path(inner) / "outer.pth").write_text(f"{outer}\n" + "".join(f"{p}\n" for p in site.getsitepackages()
                                                                  if p != outer))
    env = {"VIRTUAL_ENV": str(venv), "PATH": f"{venv / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin"}
    result = sh(["make", "install", "PIP_ARGS=--no-deps -q"], project, **env)
    assert f"git+file://{template}@{commit_a}#subdirectory=hfclf" in result.stdout
    assert f"hfclf {VERSION} installed (the pin)" in result.stdout
    location = subprocess.run([str(python), "-c", "import hfclf; print(hfclf.__file__)"],
                              capture_output=True, text=True, check=True).stdout
    assert location.startswith(str(venv))            # this venv's copy, not the editable checkout
    version = subprocess.run([str(venv / "bin" / "hfclf"), "--version"], capture_output=True, text=True)
    assert version.stdout.strip().endswith(VERSION), version.stdout + version.stderr

    # a pin the installed library does not match is a clear error
    pyproject = project / "pyproject.toml"
    pyproject.write_text(re.sub(rf'^version = "{re.escape(VERSION)}"', 'version = "9.9.9"', pyproject.read_text(), flags=re.M))
    sh(["git", "commit", "-qam", "pin 9.9.9"], project)
    failed = sh(["make", "install", "PIP_ARGS=--no-deps -q"], project, check=False, **env)
    assert failed.returncode != 0
    assert f"hfclf {VERSION} is installed but pyproject.toml pins [tool.hfclf] version = 9.9.9" in failed.stderr
