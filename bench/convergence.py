"""Convergence-based stopping vs a fixed schedule, and the plan's estimate vs the actual time.

For each dataset it bakes a project (template defaults), runs the stages up to `plan` (smoke
measures throughput; the plan estimates), then trains with the defaults (`dvc repro -s -f train`,
timed) and with a fixed schedule (`train.max_epochs=N`, no early stopping), and prints test
macro-F1, training time and the plan's estimate for each.

    python bench/convergence.py [--repeats 1] [--fixed-epochs 5] [--datasets bitext,debian]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import importlib.util

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import CSV, ROOT, env_for  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_datasets", Path(__file__).with_name("datasets.py"))
datasets = importlib.util.module_from_spec(_spec)   # not `import datasets`: that name is Hugging Face's
_spec.loader.exec_module(datasets)


def bake_with(csv: Path, text: str, label: str, into: Path) -> Path:
    """A project with the template's defaults for this CSV and its columns."""
    subprocess.run([sys.executable, "-m", "cookiecutter", str(ROOT), "--no-input", "--output-dir", str(into),
                    f"dataset={csv}", f"text_column={text}", f"label_column={label}"], check=True, env=env_for(),
                   capture_output=True)
    return into / "support-ticket-classifier"


def run(cmd: list[str], project: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=project, env=env_for(project), capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"`{' '.join(cmd)}` failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def scores(project: Path) -> dict:
    metrics = json.loads((project / "reports" / "metrics.json").read_text())
    training = json.loads((project / "reports" / "training.json").read_text())
    return {"macro_f1": metrics["macro_f1"], "train_s": training["train_seconds"], "epochs": training["epochs_run"],
            "best_epoch": training["best_epoch"], "stop": training["stop_reason"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--fixed-epochs", type=int, default=5)
    parser.add_argument("--datasets", default="bitext,debian")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--variants", default="default,fixed", help="default (convergence) and/or fixed")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="convergence-"))
    sources = {"bitext": (CSV, "instruction", "category")}
    if "debian" in args.datasets:
        path = work / "debian.csv"
        datasets.debian().to_csv(path, index=False)
        sources["debian"] = (path, "text", "label")
    results = []
    for name in args.datasets.split(","):
        csv, text, label = sources[name]
        project = bake_with(csv, text, label, work / name)
        if name == "debian":   # 54 classes x 8 rows: each seen once in smoke's steps, the loss barely moves
            smoke = project / "conf" / "smoke.yaml"
            smoke.write_text(smoke.read_text().replace("examples_per_class: 8", "examples_per_class: 2")
                             .replace("steps: 9 ", "steps: 30 "))
        run(["dvc", "repro", "plan"], project)
        plan = json.loads((project / "reports" / "training_plan.json").read_text())
        e, t = plan["estimate"], plan["training"]
        per_epoch = e["seconds_per_epoch"]
        for repeat in range(args.repeats):
            order = ["default", "fixed"] if repeat % 2 == 0 else ["fixed", "default"]
            for variant in [v for v in order if v in args.variants.split(",")]:
                if variant == "default":
                    wall = run(["dvc", "repro", "-s", "-f", "train"], project)
                else:
                    wall = run(["hfclf", "train", f"train.max_epochs={args.fixed_epochs}",
                                "train.early_stopping_patience=1000000", "train.evals_per_epoch=1"], project)
                run(["hfclf", "evaluate"], project)
                s = scores(project) | {"dataset": name, "variant": variant, "repeat": repeat, "wall_s": round(wall, 1),
                                       "estimate_s": round(per_epoch * s_epochs(project), 1),
                                       "plan_range_min": e["min_minutes"], "plan_range_max": e["total_minutes"],
                                       "plan_bound": t["epochs"]}
                s["estimate_error"] = round(s["estimate_s"] / s["train_s"] - 1, 3)
                print(json.dumps(s), flush=True)
                results.append(s)
    print("\n| dataset | variant | runs | test macro-F1 (median) | train s (median) | epochs run | estimate error |")
    print("|---|---|---|---|---|---|---|")
    for name in args.datasets.split(","):
        for variant in ("default", "fixed"):
            rows = [r for r in results if r["dataset"] == name and r["variant"] == variant]
            if rows:
                print(f"| {name} | {variant} | {len(rows)} | {statistics.median(r['macro_f1'] for r in rows):.4f} | "
                      f"{statistics.median(r['train_s'] for r in rows):.1f} | "
                      f"{', '.join(str(r['epochs']) for r in rows)} | "
                      f"{', '.join(format(r['estimate_error'], '+.0%') for r in rows)} |")


def s_epochs(project: Path) -> float:
    """Epochs actually run (the plan's per-epoch estimate times this = its estimate of this run)."""
    return float(json.loads((project / "reports" / "training.json").read_text())["epochs_run"])


if __name__ == "__main__":
    main()
