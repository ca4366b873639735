"""Benchmark (not a test): does `train.augment.typos=true` buy robustness, and at what cost?

Runs the pipeline twice on this project's data - prepare once, then train, evaluate and analyze
with typo augmentation off and on - in a scratch copy of the project (your models/ and reports/
are not touched), and prints clean accuracy, accuracy under each perturbation and the drop from
clean for both runs.

    python bench/augmentation.py                     # the configured data and epochs
    python bench/augmentation.py --epochs 1 --rate 0.1 --fraction 0.5

Everything else comes from conf/ (seed included), so both runs differ only in the switch.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
PACKAGE = "{{ cookiecutter.package_name }}"


def stage(workdir: Path, name: str, *overrides: str) -> float:
    env = {**os.environ, "PYTHONPATH": f"{PROJECT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "TOKENIZERS_PARALLELISM": "false"}
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", f"{PACKAGE}.stages.{name}",
                             f"tracking.uri=sqlite:///{workdir / 'mlflow.db'}", *overrides],
                            cwd=workdir, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"stage {name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="train.epochs for both runs (default: conf)")
    parser.add_argument("--rate", type=float, default=0.1, help="train.augment.rate (per-word typo probability)")
    parser.add_argument("--fraction", type=float, default=0.5, help="train.augment.fraction")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder and print its path")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-augmentation-"))
    for folder in ("conf", "data/raw", "data/out_of_scope", "data/challenge"):
        if (PROJECT / folder).exists():
            shutil.copytree(PROJECT / folder, workdir / folder, ignore=shutil.ignore_patterns("*.dvc"))
    shutil.copy(PROJECT / "dvc.yaml", workdir / "dvc.yaml")
    try:
        prepare_s = stage(workdir, "prepare")
        common = [f"train.epochs={args.epochs}"] if args.epochs else []
        rows = []
        for augment in (False, True):
            train_s = stage(workdir, "train", *common, f"train.augment.typos={str(augment).lower()}",
                            f"train.augment.rate={args.rate}", f"train.augment.fraction={args.fraction}")
            stage(workdir, "evaluate", "evaluate.baselines.run=[]")
            stage(workdir, "analyze")
            analysis = json.loads((workdir / "reports/failure_analysis.json").read_text())
            rows.append((augment, train_s, analysis["robustness"]))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    names = [p["perturbation"] for p in rows[0][2]["perturbations"]]
    print(f"\nTypo augmentation benchmark ({rows[0][2]['rows']} test rows; prepare {prepare_s:.0f} s; "
          f"rate {args.rate}, fraction {args.fraction})\n")
    print(f"{'train.augment.typos':<21}{'train s':>9}{'clean':>9}" + "".join(f"{n:>22}" for n in names))
    for augment, train_s, robust in rows:
        cells = "".join(f"{p['accuracy']:>11.4f} ({-p['drop_points']:+5.1f} pt)" for p in robust["perturbations"])
        print(f"{str(augment).lower():<21}{train_s:>9.0f}{robust['clean_accuracy']:>9.4f}{cells}")
    off, on = ({p["perturbation"]: p["drop_points"] for p in r[2]["perturbations"]} for r in rows)
    if "typos" in off:
        print(f"\nrobustness drop under typos: {off['typos']:.1f} points without augmentation, "
              f"{on['typos']:.1f} with it")
    if args.keep:
        print(f"scratch project kept at {workdir}")


if __name__ == "__main__":
    main()
