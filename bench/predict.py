"""The inference benchmark: hfclf's `Predictor` (what a baked project's evaluate, predict and demo
use) against `transformers.pipeline("text-classification")` on the same trained model and texts.

    python bench/predict.py --model-dir <project>/models/model [--csv FILE]

Reports batch throughput (texts/s) of
- `pipeline("text-classification", model=...)` called on the list of texts as a user writes it
  (its default batch size, 1), and the same pipeline with `batch_size=64`;
- `Predictor` (tokenize once, length-sorted batches of 256, bf16 autocast where the CPU runs bf16
  natively) - what `evaluate` and the demo use - and the same with int8 dynamic quantization
  of the Linear layers (reported; not the default unless it keeps the labels);
and the share of texts whose predicted label equals the pipeline's, plus single-text latency
(p50 / p95 over --single texts) of `Predictor.predict([text])`, the demo's call.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "bitext" / "customer_support_sample.csv"


def timed(fn, repeats: int = 1):
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--csv", type=Path, default=CSV)
    parser.add_argument("--text-column", default="instruction")
    parser.add_argument("--single", type=int, default=200, help="texts for the single-text latency")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import pandas as pd
    import torch
    from transformers import pipeline
    from transformers.utils import logging as hf_logging

    from hfclf.infra import compute
    from hfclf.train import modeling

    hf_logging.set_verbosity_error()
    texts = pd.read_csv(args.csv)[args.text_column].dropna().astype(str).tolist()
    hw = compute.select("cpu", "auto", "auto")
    predictor = modeling.Predictor.from_dir(args.model_dir, hw)
    labels = predictor.labels
    pipe = pipeline("text-classification", model=str(args.model_dir), device=-1)

    results = {"texts": len(texts), "threads": torch.get_num_threads(), "precision": hw.precision}
    predictor.predict(texts[:64])                       # warm-up: first calls allocate
    pipe(texts[:8])
    t_pipe, pipe_out = timed(lambda: pipe(texts, truncation=True))
    reference = [o["label"] for o in pipe_out]
    t_pipe64, pipe64_out = timed(lambda: pipe(texts, truncation=True, batch_size=64))
    t_pred, probs = timed(lambda: predictor.predict_proba(texts))
    fast = [labels[i] for i in probs.argmax(1)]

    def agree(a, b):
        return sum(x == y for x, y in zip(a, b)) / len(a)

    results["pipeline"] = {"seconds": t_pipe, "texts_per_s": len(texts) / t_pipe}
    results["pipeline_batch64"] = {"seconds": t_pipe64, "texts_per_s": len(texts) / t_pipe64,
                                   "same_labels": agree([o["label"] for o in pipe64_out], reference)}
    results["predictor"] = {"seconds": t_pred, "texts_per_s": len(texts) / t_pred,
                            "same_labels": agree(fast, reference)}

    quantized = modeling.Predictor(modeling.quantize_dynamic(predictor.model), predictor.tokenizer,
                                   predictor.max_length, hw) if hasattr(modeling, "quantize_dynamic") else None
    if quantized is None:
        import copy

        model_q = torch.ao.quantization.quantize_dynamic(copy.deepcopy(predictor.model).float(),
                                                         {torch.nn.Linear}, dtype=torch.qint8)
        quantized = modeling.Predictor(model_q, predictor.tokenizer, predictor.max_length,
                                       compute.select("cpu", "fp32", "auto"))
    quantized.predict(texts[:64])
    t_q, probs_q = timed(lambda: quantized.predict_proba(texts))
    results["predictor_int8"] = {"seconds": t_q, "texts_per_s": len(texts) / t_q,
                                 "same_labels": agree([labels[i] for i in probs_q.argmax(1)], reference)}

    single = texts[: args.single]
    latencies = []
    for text in single:
        started = time.perf_counter()
        predictor.predict([text])
        latencies.append(time.perf_counter() - started)
    pipe_latencies = []
    for text in single:
        started = time.perf_counter()
        pipe(text)
        pipe_latencies.append(time.perf_counter() - started)

    def pct(values, q):
        return statistics.quantiles(values, n=100)[q - 1] * 1000

    results["single_text_ms"] = {"predictor_p50": pct(latencies, 50), "predictor_p95": pct(latencies, 95),
                                 "pipeline_p50": pct(pipe_latencies, 50), "pipeline_p95": pct(pipe_latencies, 95)}
    base = results["pipeline"]["texts_per_s"]
    lines = [f"Inference on {len(texts)} texts ({hw.precision} autocast for Predictor, {results['threads']} threads):", "",
             "| predictor | texts/s | × pipeline | same label as pipeline |", "|---|---|---|---|",
             f"| `pipeline(\"text-classification\")` (default batch size) | {base:.0f} | 1.0× | 100% (reference) |"]
    for key, name in (("pipeline_batch64", "`pipeline(..., batch_size=64)`"),
                      ("predictor", "**`Predictor` (default)**"),
                      ("predictor_int8", "`Predictor` + int8 dynamic quantization (not default)")):
        r = results[key]
        lines.append(f"| {name} | {r['texts_per_s']:.0f} | {r['texts_per_s'] / base:.1f}× | "
                     f"{100 * r['same_labels']:.2f}% |")
    s = results["single_text_ms"]
    lines += ["", f"Single text (`Predictor.predict([text])`, the demo's call): p50 {s['predictor_p50']:.1f} ms, "
              f"p95 {s['predictor_p95']:.1f} ms; pipeline p50 {s['pipeline_p50']:.1f} ms, p95 {s['pipeline_p95']:.1f} ms."]
    print("\n".join(lines))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        args.out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
