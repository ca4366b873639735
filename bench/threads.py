"""One text at a time: how many CPU threads a forward pass should get (hfclf/train/modeling.py,
`TOKENS_PER_THREAD`), measured.

    python bench/threads.py --model-dir <project>/models/model [--precision auto|fp32|bf16]
    python bench/threads.py --shape 12,768 [--precision ...]     # a random BERT of that shape (timing only)

For texts of about each length (--lengths; built from the Bitext sample, plus the sample's own texts
with a model folder), `Predictor.predict([text])` runs under four thread rules, alternating text by
text (the order flipped each text and pass):
- `one`: always one thread; `all`: always every thread;
- `0.4.8`: one thread per 128 tokens, the rule before hfclf 0.4.9;
- `now`: the Predictor's own rule for this precision and this process's OpenMP wait (infra/openmp.py).
Prints p50 / p95 ms per rule and the median of the paired time ratios against `one`. OpenMP's wait is
decided when hfclf is imported (as in every hfclf process); set OMP_WAIT_POLICY=PASSIVE to measure
threads that sleep at once.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import CSV  # noqa: E402

RULES = ("one", "0.4.8", "now", "all")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model-dir", type=Path, help="a trained model folder (models/model of a project)")
    source.add_argument("--shape", help="LAYERS,WIDTH of a randomly initialised BERT, e.g. 12,768 (bert-base)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    parser.add_argument("--lengths", default="8,16,32,64,128", help="token lengths of the built texts")
    parser.add_argument("--texts", type=int, default=40, help="texts per length")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--csv", type=Path, default=CSV)
    args = parser.parse_args()

    # hfclf first: importing it decides how OpenMP's threads wait (infra/openmp.py), before torch loads
    from hfclf.infra import compute
    from hfclf.train import batching, modeling

    import pandas as pd

    hw = compute.select("cpu", args.precision, "auto")
    if args.model_dir:
        predictor = modeling.Predictor.from_dir(args.model_dir, hw)
    else:
        predictor = random_bert(args.shape, hw)
    now = predictor.tokens_per_thread
    tokens_per_thread = {"one": 10 ** 9, "0.4.8": 128, "now": now, "all": 1}
    base = pd.read_csv(args.csv)["instruction"].dropna().astype(str).tolist()

    def text_of(tokens: int, start: int) -> str:
        words, out = " ".join(base[start:start + 60]).split(), []
        for word in words:
            out.append(word)
            if len(batching.tokenize(predictor.tokenizer, [" ".join(out)], 512)[0]) >= tokens:
                break
        return " ".join(out)

    sets = {f"~{n} tokens": [text_of(int(n), i * 7) for i in range(args.texts)] for n in args.lengths.split(",")}
    if args.model_dir:
        sets = {"sample texts": base[: args.texts * 3]} | sets
    print(f"One text per call, {hw.precision}, {hw.threads} threads, OpenMP wait: {compute.openmp_wait()}; "
          f"`now` = two threads from {2 * now} tokens; load {os.getloadavg()[0]:.2f}; p50 / p95 ms "
          f"(paired time ratio to `one`):\n")
    print("| texts | " + " | ".join(f"`{r}`" for r in RULES) + " |")
    print("|---|" + "---|" * len(RULES))
    for name, texts in sets.items():
        for text in texts[:5]:                                  # warm-up
            predictor.predict([text])
        seconds = {rule: [] for rule in RULES}
        for pass_ in range(args.passes):
            for i, text in enumerate(texts):
                for rule in (RULES if (i + pass_) % 2 == 0 else RULES[::-1]):
                    predictor.tokens_per_thread = tokens_per_thread[rule]
                    started = time.perf_counter()
                    predictor.predict([text])
                    seconds[rule].append(time.perf_counter() - started)
        cells = []
        for rule in RULES:
            q = statistics.quantiles(seconds[rule], n=100)
            ratio = statistics.median(a / b for a, b in zip(seconds[rule], seconds["one"]))
            cells.append(f"{q[49] * 1000:.1f} / {q[94] * 1000:.1f} ({ratio:.2f})")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


def random_bert(shape: str, hw):
    """A Predictor over a seeded, randomly initialised BERT of LAYERS,WIDTH (hfclf.testing.tiny_bert's
    MiniLM tokenizer, a fresh 11-label head as training builds it): the time of a forward pass does not
    depend on the weights."""
    from hfclf.testing import tiny_bert
    from hfclf.train import modeling

    try:
        layers, width = (int(v) for v in shape.split(","))
    except ValueError:
        sys.exit(f"--shape {shape!r}: give LAYERS,WIDTH, e.g. 12,768")
    with tempfile.TemporaryDirectory() as folder:
        tiny_bert(Path(folder), positions=512, layers=layers, width=width, heads=max(1, width // 64),
                  intermediate=4 * width)
        tokenizer, model, _ = modeling.load_for_training(folder, [f"label{i}" for i in range(11)])
    return modeling.Predictor(model, tokenizer, 512, hw)


if __name__ == "__main__":
    main()
