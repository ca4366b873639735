"""Where a bake came from: the cruft-compatible `.cruft.json` (template, commit, context, skip list).

This module owns the record post_gen commits in the project's first commit, so that `make install`
can install the pinned library from the same place and `make update` (cruft) can take later
template commits: the template as cruft can clone it (template_source: abbreviations expanded, a
local path made absolute), the checkout's commit and subdirectory (git_output), the answers in
cookiecutter.json's order without the keys that describe only this run (cruft_state,
template_keys), and the file written in cruft's own JSON format (write_cruft_file).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any, Mapping

from hfclf.bake.answers import text

CRUFT_FILE = ".cruft.json"
# Paths `cruft update` leaves out of its template renders: never template files, only what a
# bake or a pipeline run adds.
CRUFT_SKIP = [".git", ".dvc", CRUFT_FILE, "dvc.lock", "data/processed", "models", "reports", "dist",
              "mlruns", "mlflow.db"]
# Context keys that say where *this* cookiecutter run happened, not what the project is.
RUN_KEYS = ("_repo_dir", "_output_dir", "_checkout")
ABBREVIATIONS = {"gh": "https://github.com/{}.git", "gl": "https://gitlab.com/{}.git",
                 "bb": "https://bitbucket.org/{}"}



# ---------------------------------------------------------------------------- where it came from

def git_output(folder: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True)
    except OSError:
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def template_source(template: str, repo_dir: Path | None) -> tuple[str, Path | None]:
    """(template as cruft can clone it, local checkout or None): abbreviations expanded, a local
    path made absolute (the folder cookiecutter actually read)."""
    prefix, _, rest = template.partition(":")
    if prefix in ABBREVIATIONS and rest and not rest.startswith("//"):
        return ABBREVIATIONS[prefix].format(rest), repo_dir
    if "://" in template or re.match(r"^[\w.-]+@[\w.-]+:", template):
        return template, repo_dir
    local = Path(repo_dir) if repo_dir else Path(os.path.expanduser(template))
    return str(local.resolve()), local.resolve()


def cruft_state(answers: Mapping[str, Any], repo_dir: str | Path | None) -> dict[str, Any]:
    """The `.cruft.json` content `cruft create` would write for this bake.

    Under `cruft create` (answers hold `_commit`) it is byte-for-byte what cruft writes after
    this hook, so the first commit already holds it. Under plain cookiecutter: template as given
    (absolute when local), the checkout's HEAD, the answers without the keys that describe this
    run (_repo_dir, _output_dir, _checkout), plus cruft's _template/_commit and a skip list.
    """
    repo = Path(repo_dir) if repo_dir else None
    keys = template_keys(repo) + ["_template", "_commit"]  # cruft appends these two, in this order
    ordered = {k: answers[k] for k in keys if k in answers}
    ordered.update({k: v for k, v in answers.items() if k not in ordered})
    if "_commit" in answers:  # cruft create: it renders with _template/_commit and no run keys
        return {"template": answers.get("_template"), "commit": answers["_commit"], "checkout": None,
                "context": {"cookiecutter": ordered}, "directory": None}
    template, checkout_dir = template_source(text(answers, "_template") or str(repo or "."), repo)
    commit, directory = None, None
    if checkout_dir is not None and git_output(checkout_dir, "rev-parse", "--is-inside-work-tree") == "true":
        commit = git_output(checkout_dir, "rev-parse", "HEAD")
        top = git_output(checkout_dir, "rev-parse", "--show-toplevel")
        if top and "://" not in template and Path(top).resolve() != checkout_dir.resolve():
            directory = checkout_dir.resolve().relative_to(Path(top).resolve()).as_posix()
            template = str(Path(top).resolve())
    context = {k: v for k, v in ordered.items() if k not in RUN_KEYS}
    context["_template"] = template
    context["_commit"] = commit
    return {"template": template, "commit": commit, "checkout": answers.get("_checkout"),
            "context": {"cookiecutter": context}, "directory": directory, "skip": list(CRUFT_SKIP)}


def template_keys(repo: Path | None) -> list[str]:
    """cookiecutter.json's key order (what cruft writes; the hook's answers arrive sorted)."""
    try:
        spec = json.loads((repo / "cookiecutter.json").read_text(encoding="utf-8")) if repo else {}
    except (OSError, ValueError):
        spec = {}
    return [k for k in spec if k != "__prompts__"]


def write_cruft_file(project: Path, state: Mapping[str, Any]) -> None:
    # the format of cruft's own json_dumps, so cruft's rewrites leave no whitespace diff
    text_ = json.dumps(state, ensure_ascii=False, indent=2, separators=(",", ": ")) + "\n"
    (project / CRUFT_FILE).write_text(text_, encoding="utf-8")
