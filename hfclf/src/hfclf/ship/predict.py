"""predict: label texts with the trained model (`hfclf predict`, `make predict`).

    make predict TICKET="my parcel never arrived"                  # one text
    TICKET="where is my order?" hfclf predict predict.json=true     # the same, as a JSON line
    hfclf predict predict.input=tickets.csv predict.output=predictions.csv

The one text comes from the environment variable TICKET (conf/predict.yaml reads it:
`text: ${oc.env:TICKET,null}`), so a ticket's quotes, `=` or `$` never pass through a shell or
Hydra's override grammar. Each text gets its label - `UNKNOWN` when the top confidence is below the
model's abstain threshold (classifier.json) - the confidence and the top-k labels, printed on
stdout (log lines go to stderr); a multi-label model gives each text its label set (every label at
or over its threshold; `labels` in JSON, `predicted_labels` in a file). A file (CSV, or TSV by its
extension) is predicted in batches with a progress bar; the output CSV is the input plus
`predicted_label`, `confidence` and `top_k` (JSON) columns, written atomically. Relative paths are the project root's, like every hfclf command's.

Only light imports at module level: the demo and the Hugging Face Space reuse `with_predictions`.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from hfclf.infra.errors import UserError


@dataclass
class PredictSettings:
    """conf/predict.yaml's `predict` section."""
    model_dir: str = "models/model"
    text: str | None = None                # one text (TICKET in the environment)
    input: str | None = None               # a CSV / TSV file with a text column
    output: str | None = None              # where to write the labelled file (needs input; default: print)
    text_column: str | None = None         # the input's text column (default: the first of text_columns)
    json: bool = False                     # print one JSON object per text
    top_k: int = 3
    batch_size: int = 64
    device: str = "auto"
    text_columns: list[str] = field(default_factory=lambda: ["text"])


def check(s: PredictSettings) -> None:
    if s.text is not None and s.input:
        raise UserError("give either one text (TICKET=... / predict.text) or a file (predict.input=...), not both.")
    if s.text is None and not s.input:
        raise UserError('nothing to label: run `make predict TICKET="my parcel never arrived"` or '
                        "`hfclf predict predict.input=tickets.csv [predict.output=predictions.csv]`.")
    if s.output and not s.input:
        raise UserError("predict.output needs predict.input (a single text is printed).")
    if s.top_k < 1:
        raise UserError(f"predict.top_k must be at least 1 (it is {s.top_k}).")


def text_column(columns: list[str], candidates: list[str]) -> str | None:
    """The column holding the texts: the first of `candidates` present, else the only column; None if neither."""
    found = next((c for c in candidates if c in columns), None)
    return columns[0] if found is None and len(columns) == 1 else found


def read_input(path: Path, column: str | None, candidates: list[str]):
    import pandas as pd

    if not path.is_file():
        raise UserError(f"predict.input '{path}' does not exist.")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, sep="\t" if path.suffix == ".tsv" else ",")
    except Exception as err:
        raise UserError(f"predict.input '{path}' could not be read as CSV: {str(err).splitlines()[0]}") from None
    column = column or text_column(list(frame.columns), candidates)
    if column not in frame.columns:
        raise UserError(f"predict.input '{path}' has no text column {column or ' / '.join(candidates)!r}; its "
                        f"columns are: {', '.join(map(str, frame.columns))}. Pass predict.text_column=NAME.")
    return frame, column


def with_predictions(frame, predictions):
    """The input rows plus predicted_label (UNKNOWN below the threshold), confidence and top_k (JSON);
    multi-label: predicted_labels (a JSON list) too, predicted_label being the same labels joined by '; '."""
    frame = frame.copy()
    if predictions and predictions[0].labels is not None:
        frame["predicted_labels"] = [json.dumps(p.labels, ensure_ascii=False) for p in predictions]
    frame["predicted_label"] = [p.label for p in predictions]
    frame["confidence"] = [round(p.confidence, 4) for p in predictions]
    frame["top_k"] = [json.dumps([[label, round(score, 4)] for label, score in p.top_k]) for p in predictions]
    return frame


def run(s: PredictSettings) -> None:
    """Label `s.text` or the rows of `s.input`; print them, or write `s.output`."""
    import pandas as pd

    from hfclf.infra import compute
    from hfclf.infra.files import write_csv
    from hfclf.train.modeling import Predictor

    check(s)
    frame, column = read_input(Path(s.input), s.text_column, list(s.text_columns)) if s.input else (None, None)
    predictor = Predictor.from_dir(Path(s.model_dir), compute.select(s.device, "fp32", "auto"))
    texts = frame[column].tolist() if frame is not None else [s.text]
    predictions = predictor.predict(texts, top_k=s.top_k, batch_size=s.batch_size, progress=frame is not None)
    if s.output:
        frame = with_predictions(frame, predictions)
        write_csv(frame, Path(s.output))   # atomic and formula-safe
        counts = (frame["predicted_label"].value_counts() if predictor.task != "multi_label" else
                  pd.Series([label for p in predictions for label in p.labels], dtype=object).value_counts())
        print(f"wrote {len(frame)} predictions to {s.output} ("
              + ", ".join(f"{label} {n}" for label, n in counts.items()) + ")", file=sys.stderr)
        return
    for text, p in zip(texts, predictions):
        if s.json:
            print(json.dumps({"text": text, "label": p.label, "confidence": round(p.confidence, 4),
                              "top_k": [[label, round(score, 4)] for label, score in p.top_k],
                              **({"labels": p.labels} if p.labels is not None else {}),
                              **({"reason": p.reason} if p.reason else {})}))
        else:
            others = "  ".join(f"{label} {score:.3f}" for label, score in p.top_k) or p.reason or ""
            shown = p.label if p.labels is None else "; ".join(p.labels) or "(no label)"
            print(f"{shown:<20} {p.confidence:.3f}  [{others}]  {text[:80]}")


def _logs_to_stderr() -> None:
    """Results are stdout's (a JSON line per text can be piped); warnings go to stderr, info is dropped."""
    import logging

    root = logging.getLogger()
    root.setLevel(logging.WARNING)
    for handler in root.handlers:
        if isinstance(handler, logging.StreamHandler) and getattr(handler, "stream", None) is sys.stdout:
            handler.setStream(sys.stderr)


def main() -> None:
    """`hfclf predict [predict.key=value ...]`: a Hydra entry point over conf/predict.yaml."""
    from omegaconf import DictConfig

    from hfclf.infra.cli import stage
    from hfclf.infra.settings import from_section

    @stage("predict")
    def predict(cfg: DictConfig) -> None:
        _logs_to_stderr()
        settings = from_section(PredictSettings, cfg.predict, "predict")
        if settings.text == "":
            settings.text = None   # TICKET="" is no text (whitespace-only is a text: it gets UNKNOWN, "empty text")
        run(settings)

    predict()
