"""The trained model as an MLflow `pyfunc` model: texts in, label / confidence / top-k out.

`TicketClassifier` wraps train/modeling.py's `Predictor`; MLflow builds it from code
(pyfunc_model.py) when the model is loaded, so `mlflow.pyfunc.load_model("models:/<name>/<version>")`
returns a model whose `predict(DataFrame with a "text" column | list of str)` gives one row per
text: label (UNKNOWN below the abstain threshold), confidence and the top-k as JSON; a multi-label
model adds `labels`, the predicted label set as a JSON list. Only light
imports here: this module runs inside the MLflow model, with bundle.INFERENCE_MODULES beside it.
"""
from __future__ import annotations

import json

import mlflow.pyfunc
import pandas as pd


class TicketClassifier(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper over modeling.Predictor: texts in, label / confidence / top-k out."""

    def load_context(self, context) -> None:
        from hfclf.train.modeling import Predictor

        self.predictor = Predictor.from_dir(context.artifacts["model"])

    def predict(self, context, model_input, params: dict | None = None) -> pd.DataFrame:
        params = params or {}
        predictions = self.predictor.predict(texts_from(model_input), top_k=int(params.get("top_k", 3)),
                                             batch_size=int(params.get("batch_size", 64)))
        labels = {"labels": [json.dumps(p.labels, ensure_ascii=False) for p in predictions]} \
            if self.predictor.multi_label else {}   # multi-label: the set as a JSON list
        return pd.DataFrame({
            **labels,
            "label": [p.label for p in predictions],
            "confidence": [round(p.confidence, 6) for p in predictions],
            "top_k": [json.dumps([[label, round(score, 6)] for label, score in p.top_k]) for p in predictions],
        })


def texts_from(model_input) -> list[str]:
    """Accept what pyfunc callers send: a DataFrame with a `text` column (or one column), a list, a str."""
    if isinstance(model_input, pd.DataFrame):
        column = "text" if "text" in model_input.columns else model_input.columns[0]
        model_input = model_input[column]
    if isinstance(model_input, str):
        return [model_input]
    # a missing text (None / NaN) is an empty text - Predictor answers UNKNOWN - never the string "None"
    return ["" if text is None or (isinstance(text, float) and text != text) else str(text) for text in model_input]
