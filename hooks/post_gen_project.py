"""Finish the project (local dataset under DVC, .cruft.json, git + DVC init, first commit): the
logic is hfclf.bake.post_gen (unit-tested there).

The answers reach this script as JSON data inside a string literal, never as Python source.
"""
import json
import os
import sys

ANSWERS = json.loads({{ cookiecutter | jsonify | tojson }})


def template_dir() -> str:
    """The template checkout being baked: cookiecutter names it (_repo_dir); under cruft, which
    does not, the process running this hook works in it; last, a local template path."""
    repo = ANSWERS.get("_repo_dir") or ""
    candidates = [repo, os.path.join(os.environ.get("PWD", ""), repo) if repo else ""]
    try:
        candidates.insert(1, os.readlink(f"/proc/{os.getppid()}/cwd"))
    except OSError:
        pass
    candidates.append(ANSWERS.get("_template") or "")
    for candidate in candidates:
        if candidate and os.path.isfile(os.path.join(candidate, "hfclf", "src", "hfclf", "bake", "__init__.py")):
            return os.path.abspath(candidate)
    sys.exit(f"ERROR: cannot find the template's hfclf/src/hfclf/bake/ (looked in {candidates})")


TEMPLATE_DIR = template_dir()
sys.path.insert(0, os.path.join(TEMPLATE_DIR, "hfclf", "src"))
from hfclf import bake  # noqa: E402

bake.hook(bake.post_gen, ANSWERS, os.getcwd(), TEMPLATE_DIR)
