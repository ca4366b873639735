"""Issue #17, "bad input never changes the answer silently": the library-level units (fast, in-process).
The end-to-end table on a baked project is the template's tests/test_bad_input.py."""
from __future__ import annotations

import csv
import http.server
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from hfclf.data import dataset
from hfclf.infra import files, tracking
from hfclf.infra.errors import UserError
from hfclf.infra.settings import validate_config


def _labels(path: Path) -> dict:
    frames, _ = dataset.validate(dataset.LoadedData({"all": dataset.read_file(path)}), "text", "label", str(path), 1)
    return frames["all"]["label"].value_counts().to_dict()


def test_a_class_named_none_is_a_class(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("text,label\n" + "".join(f"t{i},{['billing', 'None', 'NA', 'null'][i % 4]}\n" for i in range(40)))
    assert _labels(path) == {"billing": 10, "None": 10, "NA": 10, "null": 10}


@pytest.mark.parametrize("suffix, row", [(".csv", "t{i},{v}\n"), (".jsonl", '{{"text": "t{i}", "label": {v}}}\n')])
def test_labels_are_text_as_written_in_every_format(tmp_path, suffix, row):
    path = tmp_path / f"t{suffix}"
    header = "text,label\n" if suffix == ".csv" else ""
    path.write_text(header + "".join(row.format(i=i, v=["1", "1.0"][i % 2]) for i in range(10)))
    assert _labels(path) == {"1": 5, "1.0": 5}


def test_label_variants_are_grouped():
    assert dataset.label_variants(["1", "1.0", "Billing", "billing ", "x"]) == [["1", "1.0"], ["Billing", "billing "]]


def test_duplicate_header_is_refused_naming_file_columns_and_rows(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("text,label,text\na,b,c\nd,e,f\n")
    with pytest.raises(UserError, match=r"t.csv' has duplicate column name\(s\) 'text' \(columns: text, label, text; 2 rows\)"):
        dataset.read_file(path, ("text", "label"))


def test_two_schema_jsonl_is_refused_and_a_few_bad_rows_are_dropped(tmp_path):
    path = tmp_path / "t.jsonl"
    good = "".join(f'{{"text": "t{i}", "label": "x"}}\n' for i in range(30))
    path.write_text(good + "".join(f'{{"body": "t{i}", "category": "x"}}\n' for i in range(30)))
    with pytest.raises(UserError, match=r"30 of 60 rows lack .*lines 31, 32.*those rows have: body, category"):
        dataset.read_file(path, ("text", "label"), 0.01)
    path.write_text(good * 4 + '{"text": "a", "text": "b", "label": "x"}\n')
    malformed: list = []
    frame = dataset.read_file(path, ("text", "label"), 0.01, malformed)
    assert len(frame) == 120 and malformed[0]["line"] == 121 and "duplicate" in malformed[0]["reason"]


def test_formula_cells_are_neutralised_numbers_are_not(tmp_path):
    frame = pd.DataFrame({"text": ["=cmd|'/c calc'!A1", "+1+2", "@SUM(A1)", "-1", "plain"], "n": [1, 2, 3, 4, 5]})
    files.write_csv(frame, tmp_path / "o.csv")
    rows = list(csv.reader(open(tmp_path / "o.csv")))
    assert [r[0] for r in rows[1:]] == ["'=cmd|'/c calc'!A1", "'+1+2", "'@SUM(A1)", "-1", "plain"]


def test_demo_flag_escapes_the_client_sent_decision(tmp_path):
    from hfclf.ship.demo import Demo

    class FakePredictor:
        labels, threshold, multi_label = ["billing", "shipping"], None, False
    app = Demo(FakePredictor(), {"flagging_dir": str(tmp_path), "max_chars": 100, "top_k": 2})
    app.flag("hello", "=cmd|'/c calc'!A1 (0.9)", "billing", "@evil")
    row = list(csv.reader(open(tmp_path / "feedback.csv")))[1]
    assert row[2] == "'=cmd|'/c" and row[5] == "'@evil"


def test_config_types_are_checked_at_composition():
    cfg = OmegaConf.create({"review": {"similarity_threshold": "abc"}})
    with pytest.raises(UserError, match=r"review.similarity_threshold='abc' is invalid \(expected float \| None\)"):
        validate_config(cfg)


class _HalfUp(http.server.BaseHTTPRequestHandler):
    def do_GET(self):   # noqa: N802
        self.send_response(200 if self.path.startswith("/health") else 503)
        self.end_headers()
        self.wfile.write(b"OK" if self.path.startswith("/health") else b"unavailable")
    do_POST = do_GET

    def log_message(self, *args):
        pass


def test_a_half_up_tracking_server_fails_fast_naming_the_uri_and_dvc_checkout(monkeypatch):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HalfUp)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("DVC_STAGE", "card")
    try:
        start = time.time()
        with pytest.raises(UserError, match=rf"{uri} did not answer an API call.*`dvc checkout card`"):
            tracking.check_server(uri, 5)
        assert time.time() - start < 20
    finally:
        server.shutdown()


def test_point_data_config_finds_a_rendered_answer_with_quotes(tmp_path):
    from hfclf.bake.project import _as_rendered, point_data_config

    config = tmp_path / "conf" / "data" / "default.yaml"
    config.parent.mkdir(parents=True)
    answer = 'my "data" <x>.csv'
    config.write_text(f"source: {_as_rendered(answer)}   # comment\n")
    point_data_config(tmp_path, answer, "data/raw/x.csv")
    assert OmegaConf.load(config).source == "data/raw/x.csv"


def test_a_text_with_interpolation_syntax_is_data_in_settings():
    from hfclf.infra.settings import from_section
    from hfclf.ship.predict import PredictSettings

    text = "a ${PATH} \\${x} $HOME `id`\nline"
    assert from_section(PredictSettings, {"text": text}, "predict").text == text


def test_a_dataset_registered_by_a_parallel_run_is_logged_again_not_a_failed_trial(tmp_path, monkeypatch):
    """A sweep's parallel trials log the same dataset at the same moment; the store's get-or-create
    lets one of them hit `UNIQUE constraint failed` (seen in CI). Here the other trial's insert lands
    just before ours, in a real sqlite store; ours must still be logged, once."""
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    frames = {"train": pd.DataFrame({"text": ["a", "b"], "label": ["x", "y"]})}
    origin = {"kind": "file", "path": str(tmp_path / "t.csv")}
    real, calls = mlflow.log_input, []

    def raced(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:   # the parallel trial wins the race: its dataset exists, our insert fails
            with mlflow.start_run(nested=True):
                real(*args, **kwargs)
            raise mlflow.exceptions.MlflowException("(sqlite3.IntegrityError) UNIQUE constraint failed: "
                                                    "datasets.experiment_id, datasets.name, datasets.digest")
        return real(*args, **kwargs)

    monkeypatch.setattr(mlflow, "log_input", raced)
    with mlflow.start_run() as run:
        tracking.log_datasets(frames, "0123456789abcdef", origin)
    inputs = mlflow.get_run(run.info.run_id).inputs.dataset_inputs
    assert len(calls) == 2 and [d.dataset.digest for d in inputs] == ["0123456789abcdef"]
    monkeypatch.setattr(mlflow, "log_input", lambda *a, **k: (_ for _ in ()).throw(
        mlflow.exceptions.MlflowException("some other store error")))
    with mlflow.start_run(), pytest.raises(mlflow.exceptions.MlflowException, match="some other"):
        tracking.log_datasets(frames, "0123456789abcdef", origin)   # anything else still fails loudly
