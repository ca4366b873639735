"""The Gradio demo: type a ticket, see the top labels with their confidence; or upload a CSV.

- One ticket: the top-k labels with confidences, and the decision - the best label, or `UNKNOWN`
  when its confidence is below the model's abstain threshold (classifier.json).
- Batch: upload a CSV, download it back with predicted_label / confidence / top_k columns.
- Feedback: "Flag" appends the ticket, the prediction and the label the user says is right to a
  local CSV (demo.flagging_dir), for the next round of training data.

Safe by default: binds 127.0.0.1, caps the text length and the CSV size, reads only files that
Gradio itself received as uploads (never a path a caller names), and keeps no state but the
feedback CSV. `build_app` takes plain values so the Hub Space (space.py) runs the same app.
"""
from __future__ import annotations

import csv
import logging
import tempfile
import threading
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from hfclf.infra.errors import UserError
from hfclf.infra.files import safe_row, write_csv
from hfclf.train.modeling import UNKNOWN, Predictor
from hfclf.ship.predict import text_column, with_predictions

log = logging.getLogger(__name__)

FEEDBACK_FILE = "feedback.csv"
FEEDBACK_COLUMNS = ["time_utc", "text", "predicted", "confidence", "correct_label", "comment"]


def examples_from(predictions_csv: Path, n: int) -> list[list[str]]:
    """Test-set texts to try: half confidently right (one per class in turn), half hard - the
    model's mistakes and least confident answers. Empty when evaluate has not run."""
    if n <= 0 or not predictions_csv.exists():
        return []
    frame = pd.read_csv(predictions_csv)
    if not {"text", "actual", "predicted"} <= set(frame.columns):
        return []
    if "confidence" not in frame:
        frame["confidence"] = 1.0
    right = frame[frame["actual"] == frame["predicted"]].sort_values("confidence", ascending=False)
    easy = right.groupby("actual", sort=True).head(1)["text"].tolist()[: n - n // 2]
    wrong = frame[frame["actual"] != frame["predicted"]].sort_values("confidence", ascending=False)
    unsure = right.sort_values("confidence")
    hard = [t for t in [*wrong["text"], *unsure["text"]] if t not in easy][: n - len(easy)]
    return [[str(text)] for text in easy + hard]


class Demo:
    """The app's behaviour, independent of Gradio (so it is easy to test and reuse)."""

    def __init__(self, predictor: Predictor, settings: dict):
        self.predictor = predictor
        self.settings = settings
        self.threshold = predictor.threshold
        self.flagging_dir = Path(settings["flagging_dir"])
        self._lock = threading.Lock()

    def _check_text(self, text: str) -> str:
        text = (text or "").strip()
        if not text:
            raise ValueError("Type a ticket first.")
        if len(text) > self.settings["max_chars"]:
            raise ValueError(f"The ticket has {len(text)} characters; the demo takes at most "
                             f"{self.settings['max_chars']} (demo.max_chars).")
        return text

    def classify(self, text: str) -> tuple[dict[str, float], str]:
        """(top-k label -> confidence, the decision line). Multi-label: the scores hold every label over
        its threshold (and the top-k), the decision line lists those labels."""
        text = self._check_text(text)
        prediction = self.predictor.predict([text], top_k=self.settings["top_k"])[0]
        scores = {label: round(score, 4) for label, score in prediction.top_k}
        if prediction.labels is not None:   # top_k holds every chosen label (Predictor)
            return scores, self._label_set_line(prediction)
        if prediction.label == UNKNOWN:
            decision = (f"{UNKNOWN} - best guess {prediction.top_k[0][0]} at {prediction.confidence:.2f}, "
                        f"below the abstain threshold {self.threshold:.2f}")
        else:
            decision = f"{prediction.label} ({prediction.confidence:.2f})"
        return scores, decision

    def _label_set_line(self, prediction) -> str:
        """`billing (0.91); refund (0.63)`, or why no label was given."""
        scores = dict(prediction.top_k)
        if prediction.labels:
            return "; ".join(f"{label} ({scores[label]:.2f})" for label in prediction.labels)
        closest, score = prediction.top_k[0]
        index = self.predictor.labels.index(closest)
        return (f"no label - none is over its threshold; closest {closest} at {score:.2f} "
                f"(threshold {self.predictor.thresholds[index]:.2f})")

    def classify_file(self, path: str | None) -> str:
        """Predictions for an uploaded CSV, written to a new temporary CSV whose path is returned."""
        if not path:
            raise ValueError("Upload a CSV file first.")
        source = Path(path).resolve()
        upload_root = Path(self.settings["upload_root"]).resolve()
        if upload_root not in source.parents:
            raise ValueError("Only files uploaded through this page are read.")
        if source.stat().st_size > self.settings["max_upload_mb"] * 1024 * 1024:
            raise ValueError(f"The file is larger than {self.settings['max_upload_mb']} MB (demo.max_upload_mb).")
        try:
            frame = pd.read_csv(source, dtype=str, keep_default_na=False)
        except Exception as err:
            raise ValueError(f"The file could not be read as CSV: {str(err).splitlines()[0]}") from None
        column = text_column(list(frame.columns), self.settings["text_columns"])
        if column is None:
            raise ValueError(f"No text column: expected one of {', '.join(self.settings['text_columns'])} "
                             f"(the file has {', '.join(map(str, frame.columns))}).")
        if len(frame) > self.settings["max_batch_rows"]:
            raise ValueError(f"The file has {len(frame)} rows; the demo takes at most "
                             f"{self.settings['max_batch_rows']} (demo.max_batch_rows).")
        texts = frame[column].astype(str).str.slice(0, self.settings["max_chars"]).tolist()
        predictions = self.predictor.predict(texts, top_k=self.settings["top_k"], batch_size=self.settings["batch_size"])
        frame = with_predictions(frame, predictions)
        out = Path(tempfile.mkdtemp(prefix="predictions-")) / f"{source.stem}-predictions.csv"
        write_csv(frame, out)   # formula-safe
        return str(out)

    def flag(self, text: str, decision: str, correct_label: str | None, comment: str | None) -> str:
        """Append one feedback row to the local CSV; returns a confirmation line."""
        text = self._check_text(text)
        labels = set(self.predictor.labels) | {UNKNOWN}
        given = [correct_label] if isinstance(correct_label, str) else list(correct_label or [])  # multi-label: several
        unknown = [label for label in given if label not in labels]
        if unknown:
            raise ValueError(f"'{unknown[0]}' is not one of the model's labels.")
        correct_label = "; ".join(given)
        self.flagging_dir.mkdir(parents=True, exist_ok=True)
        path = self.flagging_dir / FEEDBACK_FILE
        with self._lock:
            new = not path.exists()
            with open(path, "a", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                if new:
                    writer.writerow(FEEDBACK_COLUMNS)
                # every cell is formula-safe: `decision` is whatever the client sent, not our label
                label, _, confidence = (decision or "").partition(" ")
                if self.predictor.multi_label:   # the whole label-set line; the confidences are in it
                    label, confidence = decision or "", ""
                writer.writerow(safe_row([datetime.now(timezone.utc).isoformat(timespec="seconds"), text,
                                          label[:200], confidence.strip("()")[:50], correct_label or "",
                                          (comment or "")[:500]]))
        return f"Thanks - saved to {path}."


def build_app(predictor: Predictor, settings: dict, examples: list[list[str]]):
    """The Gradio Blocks app. `settings` are conf/demo.yaml's `demo` values (plain dict)."""
    import gradio as gr

    from gradio import utils as gradio_utils

    settings = {**settings, "upload_root": settings.get("upload_root") or gradio_utils.get_upload_folder()}
    app = Demo(predictor, settings)

    def classify(text: str):
        try:
            return app.classify(text)
        except ValueError as err:
            raise gr.Error(str(err)) from None

    def classify_file(path):
        try:
            return app.classify_file(path)
        except ValueError as err:
            raise gr.Error(str(err)) from None

    def flag(text, decision, correct_label, comment):
        try:
            return app.flag(text, decision, correct_label, comment)
        except ValueError as err:
            raise gr.Error(str(err)) from None

    threshold = (f"Below a confidence of {predictor.threshold:.2f} the answer is `{UNKNOWN}`."
                 if predictor.threshold is not None else "No abstain threshold is set: the best label is always given.")
    if predictor.multi_label:
        threshold = ("A ticket gets every label whose score reaches that label's own threshold (tuned on "
                     "validation), so it can get several labels, or none.")
    with gr.Blocks(title=settings["title"]) as blocks:
        gr.Markdown(f"# {settings['title']}\n{settings['description']} {threshold}")
        with gr.Tab("One ticket"):
            with gr.Row():
                with gr.Column():
                    text = gr.Textbox(label="Ticket", lines=4, max_length=settings["max_chars"],
                                      placeholder="e.g. I was charged twice for my order")
                    submit = gr.Button("Submit", variant="primary")
                with gr.Column():
                    decision = gr.Textbox(label="Predicted labels" if predictor.multi_label else "Predicted label",
                                          interactive=False)
                    scores = gr.Label(label="Top labels", num_top_classes=None if predictor.multi_label else settings["top_k"])
            if examples:
                gr.Examples(examples=examples, inputs=[text], label="Examples from the test set (the later ones are hard)")
            with gr.Accordion("Wrong? Tell us (saved to a local CSV)", open=False):
                correct = (gr.Dropdown(choices=predictor.labels, multiselect=True, label="Correct labels")
                           if predictor.multi_label else
                           gr.Dropdown(choices=[*predictor.labels, UNKNOWN], label="Correct label"))
                comment = gr.Textbox(label="Comment (optional)", max_length=500)
                flag_button = gr.Button("Flag")
                flagged = gr.Markdown()
            submit.click(classify, inputs=[text], outputs=[scores, decision], api_name="predict")
            text.submit(classify, inputs=[text], outputs=[scores, decision], api_visibility="private")
            flag_button.click(flag, inputs=[text, decision, correct, comment], outputs=[flagged], api_name="flag")
        with gr.Tab("Batch (CSV)"):
            gr.Markdown(f"Upload a CSV with a `{settings['text_columns'][0]}` column (or a single column); "
                        f"at most {settings['max_batch_rows']} rows and {settings['max_upload_mb']} MB. "
                        "Download it back with `predicted_label`, `confidence` and `top_k` columns.")
            upload = gr.File(label="CSV to label", file_types=[".csv"], type="filepath")
            run_batch = gr.Button("Label the file", variant="primary")
            result = gr.File(label="Predictions")
            run_batch.click(classify_file, inputs=[upload], outputs=[result], api_name="predict_file")
    return blocks


def launch(blocks, settings: dict, prevent_thread_lock: bool = False):
    """Start the server on settings host:port; returns Gradio's (app, local_url, share_url)."""
    return blocks.launch(server_name=settings["host"], server_port=settings["port"], share=False,
                         max_file_size=f"{settings['max_upload_mb']}mb", prevent_thread_lock=prevent_thread_lock,
                         show_error=True, quiet=True)


def load(model_dir: Path, settings: dict, predictions_csv: Path, hw=None):
    """The app for a trained model folder, with examples from the evaluation's predictions."""
    if not (model_dir / "classifier.json").exists():
        raise UserError(f"'{model_dir}' has no trained model: run `make train` (or `make all`) first.")
    predictor = Predictor.from_dir(model_dir, hw)
    return build_app(predictor, settings, examples_from(predictions_csv, settings["examples"]))


def main() -> None:
    """`hfclf demo [demo.port=7861 ...]` - what `make demo` runs."""
    from omegaconf import DictConfig, OmegaConf

    from hfclf.infra import compute
    from hfclf.infra.cli import stage

    @stage("demo")
    def run(cfg: DictConfig) -> None:
        settings = OmegaConf.to_container(cfg.demo, resolve=True)
        hw = compute.select(cfg.demo.device, "fp32", cfg.compute.threads)
        blocks = load(Path(cfg.paths.model_dir), settings, Path(cfg.paths.reports) / "predictions.csv", hw)
        print(f"Demo on http://{settings['host']}:{settings['port']} (Ctrl+C to stop)", flush=True)
        launch(blocks, settings)

    run()
