"""Start-up A/B: the train stage's time outside its loop under two library versions, alternating.

    python bench/startup.py --base 0987ce0 [--label category] [--repeats 6] [--fresh-store]

Bakes one project from this template (the Bitext sample, `--label` column) and runs its stages up
to `plan`, then copies it twice: one copy runs this checkout's library (the installed, editable
`hfclf`), the other the library of git revision `--base` (its `hfclf/src` from a temporary
worktree, first on PYTHONPATH, the copy's `[tool.hfclf] version` pinned to it, which the stages
check, so the run cannot silently use the other one). Then, `--repeats` times, alternating which
goes first, it times the whole `dvc repro -s -f train` in each copy, as `make bench-train` does,
and reads the loop's own clock from reports/training.json. Outside the loop = wall - loop.
`--fresh-store` removes each copy's MLflow store first, as in a project's first training run.

Both copies run the current template's conf/ and dvc.yaml: compare revisions whose template agrees.
Prints a Markdown table: median [min-max] of each version, and of the paired differences.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import CSV, ROOT, bake, env_for, machine, measure, spread  # noqa: E402

import hfclf  # noqa: E402


def library_version(src: Path) -> str:
    """`__version__` of the library under `src` (hfclf/src), read without importing it."""
    text = (src / "hfclf" / "__init__.py").read_text(encoding="utf-8")
    return re.search(r'^__version__ = "([^"]+)"', text, re.M).group(1)


def pin(project: Path, version: str) -> None:
    """Set the project's `[tool.hfclf] version` (the stages refuse to run under another one)."""
    path = project / "pyproject.toml"
    text, count = re.subn(r'(?m)^(\[tool\.hfclf\][^\[]*?^version = )"[^"]*"', rf'\g<1>"{version}"',
                          path.read_text(encoding="utf-8"))
    if count != 1:
        sys.exit(f"{path}: no [tool.hfclf] version to pin")
    path.write_text(text, encoding="utf-8")


def run_train(project: Path, library_src: Path | None, fresh_store: bool) -> dict:
    """One timed `dvc repro -s -f train` in `project` (with `library_src` first on PYTHONPATH)."""
    if fresh_store:
        shutil.rmtree(project / "mlruns", ignore_errors=True)
        (project / "mlflow.db").unlink(missing_ok=True)
    env = env_for(project)
    if library_src is not None:
        env["PYTHONPATH"] = f"{library_src}:{env['PYTHONPATH']}"
    wall = measure(["dvc", "repro", "-s", "-f", "train"], project, env, project.parent / "train.log")["wall_s"]
    training = json.loads((project / "reports" / "training.json").read_text())
    return {"wall_s": wall, "loop_s": training["train_seconds"], "outside_s": wall - training["train_seconds"],
            "epochs": training["epochs_run"], "best_val": training.get("best_val_macro_f1")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="git revision whose library is compared with this checkout's")
    parser.add_argument("--label", default="category")
    parser.add_argument("--csv", type=Path, default=CSV)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--fresh-store", action="store_true", help="remove the MLflow store before each run")
    parser.add_argument("--pause", type=float, default=3.0, help="seconds of quiet before each run")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="hf-classifier-startup-"))
    worktree = work / "base"
    subprocess.run(["git", "worktree", "add", "--detach", str(worktree), args.base], cwd=ROOT, check=True,
                   capture_output=True)
    try:
        base_src = worktree / "hfclf" / "src"
        versions = {"base": library_version(base_src), "this": hfclf.__version__}
        if versions["base"] == versions["this"]:
            sys.exit(f"{args.base} has the same library version ({versions['this']}): nothing to compare")
        project, _ = bake(args.csv, args.label, work / "baked")
        subprocess.run(["dvc", "repro", "plan"], cwd=project, env=env_for(project), check=True, capture_output=True)
        copies = {name: work / name / project.name for name in ("this-copy", "base-copy")}
        for copy in copies.values():
            shutil.copytree(project, copy, symlinks=True)
        pin(copies["base-copy"], versions["base"])
        print(f"machine: {machine()}\n{args.label}: {versions['base']} ({args.base}) against {versions['this']} "
              f"(this checkout), {args.repeats} alternating runs{', fresh MLflow store each' if args.fresh_store else ''}",
              flush=True)
        runs: dict[str, list[dict]] = {"base": [], "this": []}
        for repeat in range(args.repeats):
            for side in (("base", "this") if repeat % 2 == 0 else ("this", "base")):
                time.sleep(args.pause)
                run = run_train(copies[f"{side}-copy"], base_src if side == "base" else None, args.fresh_store)
                runs[side].append(run)
                print(f"[{repeat + 1}/{args.repeats}] {versions[side]:>6}: wall {run['wall_s']:.2f} s, loop "
                      f"{run['loop_s']:.2f} s, outside {run['outside_s']:.2f} s, {run['epochs']} epochs", flush=True)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT, capture_output=True)

    print("\n| library | whole `dvc repro -s -f train` (s) | loop (s) | outside the loop (s) |\n|---|---|---|---|")
    for side in ("base", "this"):
        r = runs[side]
        print(f"| {versions[side]} | {spread([x['wall_s'] for x in r], '.2f')} | {spread([x['loop_s'] for x in r], '.2f')} "
              f"| {spread([x['outside_s'] for x in r], '.2f')} |")
    paired = [b["outside_s"] - t["outside_s"] for b, t in zip(runs["base"], runs["this"])]
    print(f"\noutside the loop, {versions['base']} minus {versions['this']} (pairs): {spread(paired, '.2f')} s; "
          f"epochs {sorted({x['epochs'] for x in runs['base'] + runs['this']})}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
