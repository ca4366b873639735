"""Generality, measured: the template's defaults on real datasets nobody here wrote, of different shapes.

For each dataset it bakes a project (template defaults, nothing tuned for the data), runs the
stages up to `plan` (smoke measures throughput; the plan estimates), then, alternating the order
across repeats, trains
- `default`: the defaults (convergence-based stopping), `dvc repro -s -f train`, then `hfclf evaluate`
  with its default baselines (read back from reports/metrics.json: `baselines`, `best_baseline`);
- `fixed`: a fixed schedule (`train.max_epochs=N`, no early stopping, one validation pass per epoch),
  then `hfclf evaluate` without baselines (same splits, so the same baselines);
- `--also NAME: OVERRIDES` (repeatable): the defaults with Hydra overrides of conf/train.yaml (e.g.
  `--also "window1: train.patience_window=1"`, the old patience rule), `hfclf train ... OVERRIDES`, then
  `hfclf evaluate` without baselines: an A/B of one setting on the same projects, seeds and test splits;
and reports test macro-F1, training time (the loop, from reports/training.json, and the whole
process), and the plan's estimate error: its measured throughput (smoke) times the epochs actually
run and validation passes made, against the loop's actual seconds (+10%: the plan said 10% more).

Datasets (built offline on the fly into the work folder, never committed; see bench/datasets.py):
- `bitext`: the Bitext customer-support sample (../shared), `instruction` -> `category`;
- `debian-1k`, `debian-3k`, `debian-10k`: Debian package descriptions -> section (one line, ~54 classes);
- `man`: English man pages -> man1..man8 (up to ~2000 characters, 6 classes);
- `debtags` (multi-label, `task=multi_label`): Debian package descriptions -> their debtags (`role::`,
  `use::`, `implemented-in::` facets), ~3k rows; scored by micro-F1 (the multi-label headline), with
  `prepare.rare_labels=drop` (what prepare's error tells a user to set for a long-tailed tag set).

    python bench/convergence.py [--datasets bitext,debian-1k,debian-3k,debian-10k,man,debtags] [--repeats 1]
                                [--seeds 42,7,13] [--fixed-epochs 5] [--variants default,fixed]
                                [--also "NAME: KEY=VALUE ..."] [--max-rows N] [--out bench/results/convergence.md]

--seeds trains each variant once per training seed (`compute.seed=S` on the command line; the split stays
the one `prepare` made with the project's seed, so only the head's initialisation, the batch order and
the validation sample change). With it both variants run `hfclf train compute.seed=S ...` (the default
variant without DVC around it: `dvc repro` takes no overrides), and the table adds the paired
difference, default minus fixed (and minus each --also variant), seed by seed: on a test set of a few hundred rows one run's
difference is mostly the noise of where the schedule happens to stop. Without it each run uses the
project's seed and the default variant runs `dvc repro -s -f train`.

--max-rows caps every dataset (stratified, seeded) for a quick smoke run of this script; its
numbers mean nothing. Prints one Markdown table and writes it to --out (raw runs beside it, .json).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import CSV, ROOT, env_for, machine, spread  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_datasets", Path(__file__).with_name("datasets.py"))
datasets = importlib.util.module_from_spec(_spec)   # not `import datasets`: that name is Hugging Face's
_spec.loader.exec_module(datasets)

DATASETS = ("bitext", "debian-1k", "debian-3k", "debian-10k", "man", "debtags")
DESCRIBED = {"bitext": "Bitext customer support, instruction -> category",
             "debian-1k": "Debian package descriptions -> section (apt-cache dumpavail), ~1k rows",
             "debian-3k": "Debian package descriptions -> section (apt-cache dumpavail), ~3k rows",
             "debian-10k": "Debian package descriptions -> section (apt-cache dumpavail), ~10k rows",
             "man": "English man pages (NAME + DESCRIPTION) -> man section",
             "debtags": "Debian package descriptions -> their debtags (multi-label), ~3k rows"}
MULTI_LABEL = {"debtags"}


def score_name(name: str) -> str:
    """The headline test score: macro-F1, or micro-F1 for a multi-label dataset."""
    return "micro_f1" if name in MULTI_LABEL else "macro_f1"


def build(name: str, work: Path, max_rows: int | None, seed: int = 0) -> tuple[Path, str, str]:
    """The dataset as a CSV in the work folder, and its text and label columns."""
    if name == "bitext":
        frame, text, label = pd.read_csv(CSV), "instruction", "category"
    elif name.startswith("debian-"):
        rows = {"debian-1k": 1000, "debian-3k": 3000, "debian-10k": 10000}[name]
        frame, text, label = datasets.debian(rows=rows), "text", "label"
    elif name == "man":
        frame, text, label = datasets.manpages(), "text", "label"
    elif name == "debtags":
        frame, text, label = datasets.debtags(rows=3000, seed=seed), "text", "labels"
    else:
        sys.exit(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    if max_rows and len(frame) > max_rows:   # stratified, every class kept (smoke runs of this script only)
        share = max_rows / len(frame)
        frame = pd.concat(group.sample(max(min(len(group), 10), round(len(group) * share)), random_state=seed)
                          for _, group in frame.groupby(label)).sample(frac=1.0, random_state=seed)
    path = work / f"{name}.csv"
    frame.to_csv(path, index=False)
    return path, text, label


def bake_with(csv: Path, text: str, label: str, into: Path, multi_label: bool = False) -> Path:
    """A project with the template's defaults for this CSV and its columns (multi-label: task=multi_label,
    and rare tags dropped rather than refused)."""
    subprocess.run([sys.executable, "-m", "cookiecutter", str(ROOT), "--no-input", "--output-dir", str(into),
                    f"dataset={csv}", f"text_column={text}", f"label_column={label}",
                    f"task={'multi_label' if multi_label else 'single_label'}"], check=True, env=env_for(),
                   capture_output=True)
    project = into / "support-ticket-classifier"
    if multi_label:
        conf = project / "conf" / "prepare.yaml"
        conf.write_text(conf.read_text().replace("rare_labels: refuse", "rare_labels: drop"))
    return project


def run(cmd: list[str], project: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=project, env=env_for(project), capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"`{' '.join(cmd)}` failed in {project}:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def read(project: Path, name: str) -> dict:
    return json.loads((project / "reports" / name).read_text())


def estimate_seconds(plan: dict, epochs: float, evals_per_epoch: int) -> float:
    """The plan's clock for a run of `epochs` epochs with this many validation passes per epoch: the
    smoke test's training and inference throughput, as the plan uses them (without its fixed overhead)."""
    e, rows, eval_rows = plan["estimate"], plan["data"]["rows"], plan["training"]["eval_rows"]
    per_epoch = (rows["train"] / max(e["train_examples_per_second"], 1e-9)
                 + evals_per_epoch * eval_rows / max(e["inference_examples_per_second"], 1e-9))
    return per_epoch * epochs


def parse_also(spec: str) -> tuple[str, list[str]]:
    """`--also "NAME: KEY=VALUE ..."` -> (NAME, [overrides]); exits with the expected form on anything else."""
    name, _, rest = spec.partition(":")
    overrides = shlex.split(rest)
    if not name.strip() or name.strip() in ("default", "fixed") or not overrides or not all("=" in o for o in overrides):
        sys.exit(f"--also takes 'NAME: KEY=VALUE ...' (a new name, then Hydra overrides), got {spec!r}")
    return name.strip(), overrides


def one_run(project: Path, plan: dict, variant: str, fixed_epochs: int, score: str = "macro_f1",
            seed: int | None = None, overrides: list[str] | None = None) -> dict:
    """Train one variant (with `seed`: `hfclf train compute.seed=seed`), evaluate it and read back its
    figures. `overrides`: an --also variant, the defaults with these Hydra overrides."""
    seeded = [] if seed is None else [f"compute.seed={seed}"]
    if overrides:
        wall = run(["hfclf", "train", *seeded, *overrides], project)
        run(["hfclf", "evaluate", "evaluate.baselines.run=[]"], project)     # same splits: same baselines
        evals = next((int(o.split("=", 1)[1]) for o in overrides if o.startswith("train.evals_per_epoch=")),
                     plan["training"]["evals_per_epoch"])
    elif variant == "default":
        wall = run(["hfclf", "train", *seeded] if seeded else ["dvc", "repro", "-s", "-f", "train"], project)
        run(["hfclf", "evaluate"], project)                                   # with its default baselines
        evals = plan["training"]["evals_per_epoch"]
    else:
        wall = run(["hfclf", "train", *seeded, f"train.max_epochs={fixed_epochs}", "train.early_stopping_patience=1000000",
                    "train.stop_at_score=null", "train.evals_per_epoch=1"], project)
        run(["hfclf", "evaluate", "evaluate.baselines.run=[]"], project)     # same splits: same baselines
        evals = 1
    metrics, training = read(project, "metrics.json"), read(project, "training.json")
    estimate = estimate_seconds(plan, training["epochs_run"], evals)
    return {"variant": variant, "overrides": overrides or [], "seed": seed, "score": metrics[score], "score_name": score,
            "accuracy": metrics.get("accuracy", metrics.get("subset_accuracy")),
            "train_s": training["train_seconds"], "wall_s": wall, "epochs": training["epochs_run"],
            "best_epoch": training["best_epoch"], "stop": training["stop_reason"], "estimate_s": estimate,
            "estimate_error": estimate / training["train_seconds"] - 1,
            "baselines": metrics.get("baselines") or {}, "best_baseline": metrics.get("best_baseline"),
            "margin_over_best_baseline": metrics.get("margin_over_best_baseline") or {},
            "load1": os.getloadavg()[0]}


def describe(name: str, frame: pd.DataFrame, plan: dict) -> dict:
    lengths = frame.iloc[:, 0].astype(str).str.len()
    e, t, m = plan["estimate"], plan["training"], plan["model"]
    return {"name": name, "rows": plan["data"]["rows"], "classes": plan["data"]["classes"],
            "chars_p50": float(lengths.quantile(0.5)), "chars_p95": float(lengths.quantile(0.95)),
            "truncated_share": m["truncated_share"], "max_length": m["max_length"], "epoch_bound": t["epochs"],
            "plan_seconds_per_epoch": e["seconds_per_epoch"],
            "plan_range_s": (e["min_minutes"] * 60, e["total_minutes"] * 60)}


def table(shapes: dict, results: dict, repeats: int, fixed_epochs: int, seeds: list | None = None,
          also: dict | None = None) -> str:
    data = ["| dataset | source | rows train / validation / test | classes | text characters p50 / p95 | "
            "truncated at max_length | plan: epoch bound, s per epoch, range (s) |",
            "|---|---|---|---|---|---|---|"]
    for name, s in shapes.items():
        r = s["rows"]
        data.append(f"| {name} | {DESCRIBED[name]} | {r['train']} / {r['validation']} / {r['test']} | {s['classes']} | "
                    f"{s['chars_p50']:.0f} / {s['chars_p95']:.0f} | {s['truncated_share']:.1%} at {s['max_length']} | "
                    f"{s['epoch_bound']}, {s['plan_seconds_per_epoch']:.0f}, "
                    f"{s['plan_range_s'][0]:.0f}–{s['plan_range_s'][1]:.0f} |")
    rows = ["| dataset | model | runs | test macro-F1 (multi-label: micro-F1) | training loop (s) | whole process (s) | epochs run (best) | "
            "stop | plan's estimate (s) | estimate error |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    paired = []
    labels = {"default": "fine-tune, defaults (convergence)", "fixed": f"fine-tune, fixed {fixed_epochs} epochs"}
    labels |= {n: f"fine-tune, defaults + `{' '.join(o)}` ({n})" for n, o in (also or {}).items()}
    for name, runs in results.items():
        for variant in labels:
            rs = [r for r in runs if r["variant"] == variant]
            if not rs:
                continue
            rows.append(f"| {name} | {labels[variant]} | {len(rs)} | {spread([r['score'] for r in rs], '.4f')} | "
                        f"{spread([r['train_s'] for r in rs], '.1f')} | {spread([r['wall_s'] for r in rs], '.1f')} | "
                        f"{', '.join('%.3g (%.3g)' % (r['epochs'], r['best_epoch']) for r in rs)} | "
                        f"{', '.join(sorted({r['stop'] for r in rs}))} | {spread([r['estimate_s'] for r in rs], '.1f')} | "
                        f"{spread([100 * r['estimate_error'] for r in rs], '+.0f')}% |")
        for other in [v for v in labels if v != "default"]:
            differences = paired_differences(runs, "default", other)
            if differences:
                paired.append(f"| {name} | default − {other} | {', '.join(str(seed) for seed in differences)} | "
                              f"{', '.join('%+.1f' % (100 * d) for d in differences.values())} | "
                              f"{spread([100 * d for d in differences.values()], '+.1f')} |")
        scored = [r for r in runs if r["baselines"]]
        for baseline in (scored[0]["baselines"] if scored else {}):
            f1 = [r["baselines"][baseline][r["score_name"]] for r in scored if baseline in r["baselines"]]
            best = " (best)" if scored[0]["best_baseline"] == baseline else ""
            rows.append(f"| {name} | baseline `{baseline}`{best} | {len(f1)} | {spread(f1, '.4f')} | | | | | | |")
    runs_each = repeats * len(seeds or [None])
    note = (f"median [min–max] of {runs_each} runs" + (f" (training seeds {', '.join(map(str, seeds))})"
                                                       if seeds and seeds != [None] else "")
            + ", the variants' order alternating" if runs_each > 1 else "one run each")
    if paired:
        paired = ["", "Default minus the other variants, paired by training seed (points of the headline score; "
                      "medians of each seed's repeats):", "",
                  "| dataset | pair | seeds | difference per seed | median [min–max] |", "|---|---|---|---|---|", *paired]
    return "\n".join(["Datasets (built on the fly; the plan's numbers from `dvc repro plan` on the baked project):", "",
                      *data, "", f"Results ({note}; baselines from the default run's reports/metrics.json):", "",
                      *rows, *paired, "",
                      "Training loop: reports/training.json `train_seconds`; whole process: `dvc repro -s -f train` "
                      "(defaults, unseeded) or `hfclf train ...` (fixed, --also, or seeded). Plan's estimate: the smoke test's measured "
                      "throughput times the epochs actually run and the validation passes made (the plan's "
                      "per-epoch model, without its fixed overhead); estimate error = estimate / loop − 1 "
                      "(+10%: the plan expected 10% more time than the loop took)."])


def paired_differences(runs: list[dict], first: str = "default", second: str = "fixed") -> dict:
    """Seed -> `first`'s score minus `second`'s (each the median of that seed's repeats), for the seeds
    that have both variants; empty when the runs were not seeded (`--seeds` not given)."""
    def median(variant: str, seed: int) -> float | None:
        scores = [r["score"] for r in runs if r["variant"] == variant and r.get("seed") == seed]
        return statistics.median(scores) if scores else None

    differences = {}
    for seed in dict.fromkeys(r["seed"] for r in runs if r.get("seed") is not None):   # in the order run
        a, b = median(first, seed), median(second, seed)
        if a is not None and b is not None:
            differences[seed] = a - b
    return differences


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default=",".join(DATASETS), help=f"comma-separated, from {', '.join(DATASETS)}")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seeds", default=None, help="comma-separated training seeds (compute.seed); "
                                                         "default: the project's seed, through dvc repro")
    parser.add_argument("--fixed-epochs", type=int, default=5)
    parser.add_argument("--variants", default="default,fixed",
                        help="default (convergence) and/or fixed; none: only the --also variants")
    parser.add_argument("--also", action="append", default=[], metavar="NAME: KEY=VALUE ...",
                        help="another variant: the defaults with these Hydra overrides (repeatable)")
    parser.add_argument("--max-rows", type=int, default=None, help="cap each dataset (smoke runs of this script)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the datasets and baked projects here")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "convergence.md")
    args = parser.parse_args()
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    unknown = sorted(set(names) - set(DATASETS))
    if unknown:
        sys.exit(f"unknown dataset(s) {unknown}; choose from {', '.join(DATASETS)}")
    variants = [v for v in ("default", "fixed") if v in args.variants.split(",")]
    also = dict(parse_also(spec) for spec in args.also)
    variants += list(also)
    if not variants:
        sys.exit(f"nothing to run: --variants {args.variants!r} names neither default nor fixed, and no --also")
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()] if args.seeds else [None]
    except ValueError:
        sys.exit(f"--seeds takes comma-separated whole numbers, got {args.seeds!r}")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="convergence-"))
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    print(f"machine: {machine()}; load average {load_before[0]:.2f}; work folder {work}", flush=True)
    shapes, results = {}, {}
    for name in names:
        started = time.perf_counter()
        csv, text, label = build(name, work, args.max_rows)
        project = bake_with(csv, text, label, work / name, name in MULTI_LABEL)
        run(["dvc", "repro", "plan"], project)
        plan = read(project, "training_plan.json")
        shapes[name] = describe(name, pd.read_csv(csv, usecols=[text]), plan)
        print(f"{name}: {shapes[name]['rows']} rows, {shapes[name]['classes']} classes; built, baked and planned in "
              f"{time.perf_counter() - started:.0f} s", flush=True)
        results[name] = []
        for turn, (seed, repeat) in enumerate((seed, repeat) for seed in seeds for repeat in range(args.repeats)):
            for variant in (variants if turn % 2 == 0 else variants[::-1]):
                result = one_run(project, plan, variant, args.fixed_epochs, score_name(name), seed,
                                 also.get(variant)) | {"repeat": repeat}
                results[name].append(result)
                print(f"[{repeat + 1}/{args.repeats}{'' if seed is None else f', seed {seed}'}] {name:>10} {variant:>8}: "
                      f"{result['score_name']} {result['score']:.4f}, "
                      f"loop {result['train_s']:.1f} s (process {result['wall_s']:.1f} s), "
                      f"{result['epochs']:g} epochs ({result['stop']}), plan's estimate {result['estimate_s']:.1f} s "
                      f"({result['estimate_error']:+.0%}), load {result['load1']:.2f}", flush=True)
    load_after = os.getloadavg()
    text = "\n".join([f"Machine: {machine()}.",
                      f"Load average (1/5/15 min) before: {' / '.join(f'{v:.2f}' for v in load_before)}; "
                      f"after: {' / '.join(f'{v:.2f}' for v in load_after)}."
                      + (f" **Capped at {args.max_rows} rows per dataset (a smoke run: the numbers mean nothing).**"
                         if args.max_rows else ""), "",
                      table(shapes, results, args.repeats, args.fixed_epochs, seeds, also)])
    print("\n" + text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n", encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps({"datasets": shapes, "results": results, "also": also,
                                                         "max_rows": args.max_rows}, indent=2), encoding="utf-8")
    print(f"\nwritten to {args.out}")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
