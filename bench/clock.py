"""The plan's clock under a slow spell: one round of timed steps against the median of rounds.

The smoke test times training steps on the batches of the real training split, and a validation
pass, and the plan multiplies them out to its time estimate and its epoch bound (train/timing.py).
On short texts one round of 12 steps is two or three seconds, so whatever else the machine does in
those seconds lands in the estimate: once, on Debian 10k, the plan expected 60% more time than the
loop took. This script measures that, with a real spell: for each trial it starts `--hogs`
processes that spin on the CPU for `--spell` seconds (another job on a shared machine) as the timed
training steps start (`--spell-at training`) or as the clock starts with its validation pass
(`--spell-at start`), or none (quiet), and runs the smoke test's own clock (`smoke.clock`, the
model and settings `hfclf smoke` uses) two ways, alternating:

- `one round`: `smoke.timing_min_seconds=0`, `timing_max_rounds=1` (hfclf 0.4.2 and before);
- `rounds`: the project's conf/smoke.yaml (the median of rounds until `timing_min_seconds` is timed;
  the validation pass is timed once either way).

Each clock's epoch estimate (training + the plan's validation passes) is compared with the median
of the quiet `rounds` clocks. Prints one Markdown table.

    python bench/clock.py [--dataset debian-10k] [--trials 5] [--spell 3] [--spell-at training] [--hogs 2]
                          [--workdir W]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from convergence import DATASETS, MULTI_LABEL, bake_with, build, run  # noqa: E402
from run import machine, spread  # noqa: E402

SPIN = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"


def spell(hogs: int, seconds: float) -> list[subprocess.Popen]:
    """`hogs` processes that each keep a core busy for `seconds`, started now."""
    return [subprocess.Popen([sys.executable, "-c", SPIN.format(seconds=seconds)]) for _ in range(hogs)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="debian-10k", choices=DATASETS)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--spell", type=float, default=3.0, help="seconds the other processes spin")
    parser.add_argument("--hogs", type=int, default=2, help="processes spinning during a spell")
    parser.add_argument("--spell-at", choices=("training", "start"), default="training",
                        help="start the spell with the timed training steps, or with the clock (its validation pass)")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="clock-"))
    work.mkdir(parents=True, exist_ok=True)
    csv, text, label = build(args.dataset, work, None)
    project = bake_with(csv, text, label, work / args.dataset, args.dataset in MULTI_LABEL)
    run(["dvc", "repro", "prepare"], project)
    os.chdir(project)

    from hydra import compose, initialize_config_dir

    from hfclf.data import dataset, multilabel
    from hfclf.infra import compute
    from hfclf.infra.settings import from_section
    from hfclf.preflight import smoke
    from hfclf.train import lengths, modeling, objective, timing
    from hfclf.train.stage import settings_from

    with initialize_config_dir(config_dir=str(project / "conf"), version_base=None):
        cfg = compose("smoke")
    info = dataset.read_labels(Path(cfg.paths.processed))
    labels, task = info["labels"], info.get("task", multilabel.SINGLE)
    train_df = dataset.read_split(Path(cfg.paths.processed), "train")
    val_df = dataset.read_split(Path(cfg.paths.processed), "validation")
    hw = compute.select(cfg.compute.device, cfg.compute.precision, cfg.compute.threads)
    length = lengths.timed_lengths(cfg.model.max_length, lengths.profile_tokens(Path(cfg.paths.reports)))[0]
    settings = settings_from(cfg, 1, length)
    configured = from_section(smoke.SmokeSettings, cfg.smoke, "smoke")
    methods = {"one round": dataclasses.replace(configured, timing_min_seconds=0.0, timing_max_rounds=1),
               f"rounds (≥{configured.timing_min_seconds:g} s, ≤{configured.timing_max_rounds})": configured}
    tokenizer, model, _ = modeling.load_for_training(cfg.model.name, labels, cfg.compute.seed, cfg.model.get("builder"),
                                                     task)   # the smoke test's throwaway model: the clock trains it
    goal = objective.for_task(task)
    evals = cfg.train.get("evals_per_epoch", 1)

    step_clock, hogs = timing.training_step_seconds, []

    def spell_then_steps(*a, **k):   # --spell-at training: the spell starts with the timed steps
        hogs.extend(spell(args.hogs, args.spell))
        return step_clock(*a, **k)

    def clock(method: str, condition: str) -> dict:
        timing.training_step_seconds = spell_then_steps if condition == "spell" and args.spell_at == "training" \
            else step_clock
        if condition == "spell" and args.spell_at == "start":
            hogs.extend(spell(args.hogs, args.spell))
        started = time.perf_counter()
        c = smoke.clock(model, tokenizer, train_df, val_df, labels, settings, methods[method], hw, goal)
        for hog in hogs:
            hog.wait()
        hogs.clear()
        epoch = c["epoch_training_seconds"] + evals * c["validation"]["pass_seconds"]
        return {"epoch_s": epoch, "clock_s": time.perf_counter() - started, "rounds": len(c["steps"]["rounds"]),
                "train_s": c["epoch_training_seconds"]}

    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f}; {args.dataset}: {len(train_df)} train rows, "
          f"max_length {length}; work folder {work}", flush=True)
    clock(next(iter(methods)), "quiet")   # warm-up, untimed
    results = []
    for trial in range(args.trials):
        for method in (list(methods) if trial % 2 == 0 else list(methods)[::-1]):
            for condition in ("quiet", "spell"):
                result = clock(method, condition) | {"method": method, "condition": condition}
                results.append(result)
                print(f"[{trial + 1}/{args.trials}] {method:>22} {condition:>5}: epoch {result['epoch_s']:.1f} s "
                      f"({result['rounds']} rounds, clock {result['clock_s']:.1f} s)", flush=True)
                time.sleep(1.0)   # let the spell's processes go before the next clock
    quiet = [r for r in results if r["condition"] == "quiet" and r["method"] != "one round"]
    reference = statistics.median(r["epoch_s"] for r in quiet)
    reference_train = statistics.median(r["train_s"] for r in quiet)
    rows = [f"Machine: {machine()}. {args.dataset}: {len(train_df)} training rows at max_length {length}, "
            f"{evals} validation passes per epoch. Spell: {args.hogs} processes spinning {args.spell:g} s from the "
            f"start of the {'timed training steps' if args.spell_at == 'training' else 'clock'}. {args.trials} "
            f"trials, methods alternating; reference: the median quiet `rounds` clock, {reference:.1f} s per epoch.", "",
            "| clock | condition | epoch estimate (s) | error against the reference | training part's error | "
            "clock's own time (s) | rounds |",
            "|---|---|---|---|---|---|---|"]
    for method in methods:
        for condition in ("quiet", "spell"):
            rs = [r for r in results if r["method"] == method and r["condition"] == condition]
            rows.append(f"| {method} | {condition} | {spread([r['epoch_s'] for r in rs], '.1f')} | "
                        f"{spread([100 * (r['epoch_s'] / reference - 1) for r in rs], '+.0f')}% | "
                        f"{spread([100 * (r['train_s'] / reference_train - 1) for r in rs], '+.0f')}% | "
                        f"{spread([r['clock_s'] for r in rs], '.1f')} | {spread([r['rounds'] for r in rs], 'g')} |")
    print("\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
