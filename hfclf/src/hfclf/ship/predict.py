"""Label texts with the trained model, from the command line.

    hfclf predict "my parcel never arrived" "I want a refund"
    hfclf predict --input tickets.csv --output predictions.csv
    hfclf predict --json "where is my order?"

Each text gets its label - `UNKNOWN` when the top confidence is below the model's abstain
threshold (classifier.json) - the confidence and the top-k labels. Files are predicted in batches
with a progress bar; the output CSV is the input plus `predicted_label`, `confidence` and `top_k` (JSON) columns.
Defaults come from conf/predict.yaml when run inside the project.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hfclf.infra.errors import UserError

FALLBACK = {"model_dir": "models/model", "top_k": 3, "batch_size": 64, "device": "auto", "text_columns": ["text"]}


def defaults() -> dict:
    """conf/predict.yaml's `predict` section when inside the project, else built-in fallbacks."""
    from hfclf.infra.cli import project_root

    try:
        root = project_root()
    except UserError:
        return dict(FALLBACK)
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(root / "conf"), version_base=None):
        cfg = compose(config_name="predict")
    values = OmegaConf.to_container(cfg.predict, resolve=True)
    values["model_dir"] = str(root / values["model_dir"])
    return values


def parse_args(argv: list[str] | None, base: dict) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hfclf predict",
                                     description="Label texts with the trained classifier.")
    parser.add_argument("texts", nargs="*", help="texts to label (quote each one)")
    parser.add_argument("--input", type=Path, help="CSV file with a text column to label")
    parser.add_argument("--output", type=Path, help="where to write the labelled CSV (default: print a table)")
    parser.add_argument("--text-column", help=f"column of --input holding the text (default: first of {base['text_columns']})")
    parser.add_argument("--model", default=base["model_dir"], help=f"trained model folder (default: {base['model_dir']})")
    parser.add_argument("--top-k", type=int, default=base["top_k"], help="labels reported per text")
    parser.add_argument("--batch-size", type=int, default=base["batch_size"])
    parser.add_argument("--device", default=base["device"], help="auto | cpu | cuda | mps")
    parser.add_argument("--json", action="store_true", help="print one JSON object per text")
    args = parser.parse_args(argv)
    if bool(args.texts) == bool(args.input):
        parser.error("give either texts or --input FILE (not both)")
    if args.output and not args.input:
        parser.error("--output needs --input")
    if args.top_k < 1:
        parser.error("--top-k must be at least 1")
    return args


def read_input(path: Path, column: str | None, candidates: list[str]):
    import pandas as pd

    if not path.is_file():
        raise UserError(f"--input '{path}' does not exist.")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, sep="\t" if path.suffix == ".tsv" else ",")
    except Exception as err:
        raise UserError(f"--input '{path}' could not be read as CSV: {str(err).splitlines()[0]}") from None
    if column is None:
        column = next((c for c in candidates if c in frame.columns), None)
        if column is None and len(frame.columns) == 1:
            column = frame.columns[0]
    if column not in frame.columns:
        raise UserError(f"--input '{path}' has no text column {column or ' / '.join(candidates)!r}; its columns are: "
                        f"{', '.join(map(str, frame.columns))}. Pass --text-column NAME.")
    return frame, column


def with_predictions(frame, predictions):
    """The input rows plus predicted_label (UNKNOWN below the threshold), confidence and top_k (JSON)."""
    frame = frame.copy()
    frame["predicted_label"] = [p.label for p in predictions]
    frame["confidence"] = [round(p.confidence, 4) for p in predictions]
    frame["top_k"] = [json.dumps([[label, round(score, 4)] for label, score in p.top_k]) for p in predictions]
    return frame


def run(argv: list[str] | None = None) -> int:
    from hfclf.infra import compute
    from hfclf.train.modeling import Predictor

    base = defaults()
    args = parse_args(argv, base)
    frame, column = read_input(args.input, args.text_column, base["text_columns"]) if args.input else (None, None)
    hw = compute.select(args.device, "fp32", "auto")
    predictor = Predictor.from_dir(Path(args.model), hw)
    texts = frame[column].tolist() if frame is not None else args.texts
    predictions = predictor.predict(texts, top_k=args.top_k, batch_size=args.batch_size, progress=frame is not None)
    if args.output:
        frame = with_predictions(frame, predictions)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.output.with_name(args.output.name + ".tmp")
        frame.to_csv(tmp, index=False)
        tmp.replace(args.output)
        counts = frame["predicted_label"].value_counts()
        print(f"wrote {len(frame)} predictions to {args.output} ("
              + ", ".join(f"{label} {n}" for label, n in counts.items()) + ")", file=sys.stderr)
        return 0
    for text, p in zip(texts, predictions):
        if args.json:
            print(json.dumps({"text": text, "label": p.label, "confidence": round(p.confidence, 4),
                              "top_k": [[label, round(score, 4)] for label, score in p.top_k]}))
        else:
            others = "  ".join(f"{label} {score:.3f}" for label, score in p.top_k)
            print(f"{p.label:<20} {p.confidence:.3f}  [{others}]  {text[:80]}")
    return 0


def main(argv: list[str] | None = None) -> None:
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        sys.exit(run(argv))
    except UserError as err:
        sys.stderr.write(f"ERROR: {err}\n")
        sys.exit(2)
