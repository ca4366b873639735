"""Benchmark (not a test): does `train.augment.typos=true` buy robustness, and at what cost?

Bakes a project with the template's defaults on a local dataset (as bench/run.py does), runs its
stages up to `plan` once, then `hfclf train`, `hfclf evaluate` and `hfclf analyze` twice - typo
augmentation off, then on - and prints clean accuracy, accuracy under each perturbation and the
drop from clean for both runs.

    python bench/augmentation.py                                  # the shared sample, label `category`
    python bench/augmentation.py --csv tickets.csv --label queue --epochs 1 --rate 0.1 --fraction 0.5

Everything else comes from the baked project's conf/ (seed included), so the two runs differ only
in the switch. The baked project lives in a scratch folder, removed at the end unless --keep.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import CSV, bake, env_for  # noqa: E402  (same baking and environment as the training benchmark)


def stage(project: Path, name: str, *overrides: str) -> float:
    """Run `hfclf <name> [overrides]` in the project; return its wall seconds, or exit with its output."""
    started = time.monotonic()
    result = subprocess.run(["hfclf", name, *overrides], cwd=project, env=env_for(project),
                            capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"hfclf {name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=CSV, help="a local dataset with the default text column")
    parser.add_argument("--label", default="category", help="label_column to bake with")
    parser.add_argument("--epochs", type=int, default=None, help="train.max_epochs for both runs (default: conf)")
    parser.add_argument("--rate", type=float, default=0.1, help="train.augment.rate (per-word typo probability)")
    parser.add_argument("--fraction", type=float, default=0.5, help="train.augment.fraction")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder and print its path")
    args = parser.parse_args()
    if not args.csv.exists():
        sys.exit(f"no dataset at {args.csv}: pass --csv (a CSV with the template's default text column and --label)")

    work = Path(tempfile.mkdtemp(prefix="bench-augmentation-"))
    try:
        project, _ = bake(args.csv.resolve(), args.label, work)
        started = time.monotonic()
        subprocess.run(["dvc", "repro", "plan"], cwd=project, env=env_for(project), check=True, capture_output=True)
        prepare_s = time.monotonic() - started
        common = [f"train.max_epochs={args.epochs}"] if args.epochs else []
        rows = []
        for augment in (False, True):
            train_s = stage(project, "train", *common, f"train.augment.typos={str(augment).lower()}",
                            f"train.augment.rate={args.rate}", f"train.augment.fraction={args.fraction}")
            stage(project, "evaluate", "evaluate.baselines.run=[]")
            stage(project, "analyze")
            analysis = json.loads((project / "reports" / "failure_analysis.json").read_text(encoding="utf-8"))
            rows.append((augment, train_s, analysis["robustness"]))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    names = [p["perturbation"] for p in rows[0][2]["perturbations"]]
    print(f"\nTypo augmentation benchmark ({rows[0][2]['rows']} test rows; prepare to plan {prepare_s:.0f} s; "
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
        print(f"scratch project kept at {project}")


if __name__ == "__main__":
    main()
