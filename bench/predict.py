"""The inference benchmark: hfclf's `Predictor` (what a baked project's evaluate, predict and demo
use) against `transformers.pipeline("text-classification")` on the same trained model and texts.

    python bench/predict.py --model-dir <project>/models/model [--csv FILE] [--rounds 3]

Reports batch throughput (texts/s) of
- `pipeline("text-classification", model=...)` called on the list of texts as a user writes it
  (its default batch size, 1), and the same pipeline with `batch_size=64`;
- `Predictor` (tokenize once, batches of one length each so next to nothing is padded; on a CPU a
  thread per 128 tokens of a batch and eager attention for many short texts; bf16 autocast where the
  CPU runs bf16 natively) - what `evaluate` and the demo use - and the same with int8 dynamic
  quantization of the Linear layers (reported; not the default unless it keeps the labels);
and the share of texts whose predicted label equals the pipeline's, the largest difference between
the two's probability of that label (the Predictor's without its temperature), plus single-text
latency (p50 / p95) of `Predictor.predict([text])`, the demo's call, and of `pipeline(text)`.

The machine may be shared, so nothing is timed once: the batch runs alternate (order flipped each
round) for --rounds rounds and the single texts alternate text by text (order flipped each text)
for --single-rounds passes; figures are medians, ratios the median of the paired ratios, [min-max].
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import CSV, spread  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--csv", type=Path, default=CSV)
    parser.add_argument("--text-column", default="instruction")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of the batch runs")
    parser.add_argument("--single", type=int, default=200, help="texts for the single-text latency")
    parser.add_argument("--single-rounds", type=int, default=3, help="passes over those texts")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="the Predictor's (compute.precision); fp32 on a bf16 CPU stands in for a CPU without "
                             "native bf16, where auto means fp32")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    # hfclf first: importing it decides how OpenMP threads wait (infra/openmp.py) before torch loads, as
    # in every hfclf process (stages, predict, demo); both sides below run under it.
    from hfclf.infra import compute
    from hfclf.train import modeling

    import pandas as pd
    import torch
    from transformers import pipeline
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    texts = pd.read_csv(args.csv)[args.text_column].dropna().astype(str).tolist()
    hw = compute.select("cpu", args.precision, "auto")
    predictor = modeling.Predictor.from_dir(args.model_dir, hw)
    labels = predictor.labels
    pipe = pipeline("text-classification", model=str(args.model_dir), device=-1)

    model_q = torch.ao.quantization.quantize_dynamic(copy.deepcopy(predictor.model).float(),
                                                     {torch.nn.Linear}, dtype=torch.qint8)
    quantized = modeling.Predictor(model_q, predictor.tokenizer, predictor.max_length,
                                   compute.select("cpu", "fp32", "auto"))
    runs = {"pipeline": lambda: pipe(texts, truncation=True),
            "pipeline_batch64": lambda: pipe(texts, truncation=True, batch_size=64),
            "predictor": lambda: predictor.predict_proba(texts),
            "predictor_int8": lambda: quantized.predict_proba(texts)}
    results = {"texts": len(texts), "threads": torch.get_num_threads(), "precision": hw.precision,
               "openmp_wait": compute.openmp_wait(), "rounds": args.rounds,
               "load_before": os.getloadavg()}
    predictor.predict(texts[:64])                       # warm-up: first calls allocate
    quantized.predict(texts[:64])
    pipe(texts[:8])

    seconds, outputs = {name: [] for name in runs}, {}
    for round_ in range(args.rounds):
        for name in (list(runs) if round_ % 2 == 0 else list(runs)[::-1]):
            started = time.perf_counter()
            outputs[name] = runs[name]()
            seconds[name].append(time.perf_counter() - started)

    reference = [o["label"] for o in outputs["pipeline"]]

    def agree(predicted):
        return sum(x == y for x, y in zip(predicted, reference)) / len(reference)

    def label_names(probs):
        return [labels[i] for i in probs.argmax(1)]

    # the Predictor's probabilities without its temperature, from its logits (not softmax(T * log p): with a
    # temperature well under 1 the tempered probabilities underflow to 0 and their logarithms lose the rest)
    untempered = torch.softmax(torch.from_numpy(predictor.predict_logits(texts)), -1).numpy()
    gap = max(abs(float(untempered[i, labels.index(o["label"])]) - o["score"]) for i, o in enumerate(outputs["pipeline"]))
    same = {"pipeline": 1.0, "pipeline_batch64": agree([o["label"] for o in outputs["pipeline_batch64"]]),
            "predictor": agree(label_names(outputs["predictor"])),
            "predictor_int8": agree(label_names(outputs["predictor_int8"]))}
    for name in runs:
        speed = [len(texts) / s for s in seconds[name]]
        times = [p / s for p, s in zip(seconds["pipeline"], seconds[name])]  # paired, per round
        results[name] = {"seconds": seconds[name], "texts_per_s": statistics.median(speed),
                         "texts_per_s_all": speed, "x_pipeline": statistics.median(times),
                         "x_pipeline_all": times, "same_labels": same[name]}
    results["predictor"]["max_probability_gap_to_pipeline"] = gap

    single = texts[: args.single]
    latencies = {"predictor": [], "pipeline": []}
    calls = {"predictor": lambda text: predictor.predict([text]), "pipeline": lambda text: pipe(text)}
    for text in single[:10]:                            # warm-up
        for call in calls.values():
            call(text)
    for pass_ in range(args.single_rounds):
        for i, text in enumerate(single):
            for name in (("predictor", "pipeline") if (i + pass_) % 2 == 0 else ("pipeline", "predictor")):
                started = time.perf_counter()
                calls[name](text)
                latencies[name].append(time.perf_counter() - started)

    def pct(values, q):
        return statistics.quantiles(values, n=100)[q - 1] * 1000

    paired = [a / b for a, b in zip(latencies["predictor"], latencies["pipeline"])]
    results["single_text_ms"] = {"predictor_p50": pct(latencies["predictor"], 50),
                                 "predictor_p95": pct(latencies["predictor"], 95),
                                 "pipeline_p50": pct(latencies["pipeline"], 50),
                                 "pipeline_p95": pct(latencies["pipeline"], 95),
                                 "calls_each": len(paired), "paired_ratio_median": statistics.median(paired)}
    results["load_after"] = os.getloadavg()

    base = results["pipeline"]
    lines = [f"Inference on {len(texts)} texts ({hw.precision} autocast for Predictor, {results['threads']} threads, "
             f"OpenMP wait: {results['openmp_wait']}; {args.rounds} alternating rounds, median [min-max]; "
             f"load average {results['load_before'][0]:.2f} before, {results['load_after'][0]:.2f} after):", "",
             "| predictor | texts/s | × pipeline (paired per round) | same label as pipeline |", "|---|---|---|---|",
             f"| `pipeline(\"text-classification\")` (default batch size) | {spread(base['texts_per_s_all'], '.1f')} | 1.0× "
             "| 100% (reference) |"]
    for key, name in (("pipeline_batch64", "`pipeline(..., batch_size=64)`"),
                      ("predictor", "**`Predictor` (default)**"),
                      ("predictor_int8", "`Predictor` + int8 dynamic quantization (not default)")):
        r = results[key]
        lines.append(f"| {name} | {spread(r['texts_per_s_all'], '.1f')} | {spread(r['x_pipeline_all'], '.1f')}× | "
                     f"{100 * r['same_labels']:.2f}% |")
    s = results["single_text_ms"]
    lines += ["", f"Largest difference between the Predictor's probability (without its temperature) and the "
              f"pipeline's score for the pipeline's label: {gap:.1e}.",
              "", f"Single text ({s['calls_each']} calls each, alternating; `Predictor.predict([text])`, the demo's call): "
              f"p50 {s['predictor_p50']:.1f} ms, p95 {s['predictor_p95']:.1f} ms; pipeline p50 {s['pipeline_p50']:.1f} ms, "
              f"p95 {s['pipeline_p95']:.1f} ms; Predictor / pipeline time, median of the pairs: "
              f"{s['paired_ratio_median']:.2f}."]
    print("\n".join(lines))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        args.out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
