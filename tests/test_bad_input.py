"""Issue #17, "bad input never changes the answer silently": one parametrised table of bad inputs,
each either refused with one named line (exit 2, no traceback) or handled without changing the
answer - plus the good behaviours that must stay. Runs on a project baked from this template and
trained on a tiny in-process BERT (seconds, no download).

Recovery from `kill -9` during training is covered by the library's
hfclf/tests/test_preflight.py::test_killed_training_resumes_from_its_last_checkpoint (too slow to
repeat here); the table's `kill9_recovery_is_covered` case checks that it exists.
"""
from __future__ import annotations

import csv
import http.server
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, free_port, project_env, run

CLASSES = {"billing": ["i was charged twice", "refund my payment", "wrong amount on invoice"],
           "shipping": ["where is my parcel", "delivery is late", "package never arrived"],
           "account": ["reset my password", "cannot log in", "delete my account"]}
TOKEN = "hf_BadInputSuiteTokenThatMustNeverLeak42"
HOSTILE_TICKET = "a `id` $HOME $(echo x) ${PATH} \"double\" 'single' \\ back\nsecond line $$ % # ; | &"


def tickets_csv(path: Path, rows: int = 15) -> Path:
    lines = ["text,label"]
    for label, phrases in CLASSES.items():
        lines += [f"{phrases[i % 3]} {i},{label}" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def baked(tmp_path_factory) -> Path:
    """The template baked on a small local CSV (git + DVC initialised by its hooks)."""
    from cookiecutter.main import cookiecutter

    root = tmp_path_factory.mktemp("bad-input")
    data = tickets_csv(root / "tickets.csv")
    project = Path(cookiecutter(str(ROOT), no_input=True, output_dir=str(root / "out"),
                                extra_context={"dataset": str(data), "text_column": "text", "label_column": "label"}))
    return project


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from hfclf.testing import tiny_bert

    return tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="module")
def trained(baked, tiny_model) -> Path:
    run(["hfclf", "prepare", "prepare.split=stratified", "prepare.validation_size=0.2", "prepare.test_size=0.2"], baked)
    run(["hfclf", "train", f"model.name={tiny_model}", "model.freeze_embeddings=false", "train.max_epochs=1",
         "train.batch_size=8", "compute.device=cpu"], baked)
    return baked


def scratch(baked: Path, tmp_path: Path) -> Path:
    """A fresh project folder (conf/, dvc.yaml, pyproject.toml of the bake) for prepare/review cases."""
    for name in ("conf", "dvc.yaml", "pyproject.toml"):
        source = baked / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, tmp_path / name)
    return tmp_path


def refused(result: subprocess.CompletedProcess, *words: str) -> str:
    """Exit 2 with one ERROR line holding `words`, and no traceback."""
    assert result.returncode == 2, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    line = next(l for l in result.stderr.splitlines() if l.startswith("ERROR:"))
    for word in words:
        assert word in line, line
    return line


def prepare(project: Path, data: Path, *extra: str) -> subprocess.CompletedProcess:
    return run(["hfclf", "prepare", f"data.source={data}", "data.text_column=text", "data.label_column=label",
                *extra], project, check=False)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- the cases

def none_is_a_class(ctx):       # defect 1
    project = scratch(ctx.baked, ctx.tmp)
    data = write(ctx.tmp / "t.csv", "text,label\n" + "".join(
        f"{p} {i},{label}\n" for label, p in (("billing", "charged twice"), ("shipping", "parcel late"),
                                                ("None", "no category")) for i in range(10)))
    result = prepare(project, data)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((project / "reports/data_profile.json").read_text())["labels"] == ["None", "billing", "shipping"]


def numeric_labels_as_written_then_review_flags_variants(ctx):   # defect 2 + done 1
    project = scratch(ctx.baked, ctx.tmp)
    data = write(ctx.tmp / "t.jsonl", "".join(json.dumps({"text": f"{p} {i}", "label": None}).replace("null", v) + "\n"
                                              for v, p in (("1", "charged twice"), ("1.0", "parcel late"),
                                                           ("2", "reset password")) for i in range(10)))
    result = prepare(project, data)
    assert result.returncode == 0, result.stderr[-3000:]
    profile = json.loads((project / "reports/data_profile.json").read_text())
    assert profile["labels"] == ["1", "1.0", "2"] and profile["label_variants"] == [["1", "1.0"]]
    assert "differ only by case, spacing or number format" in result.stdout + result.stderr
    refused(run(["hfclf", "review", "review.fail_on_label_variants=true"], project, check=False), "'1' / '1.0'")


def duplicate_header_refused(ctx):   # defect 3
    data = write(ctx.tmp / "t.csv", "text,label,text\na,b,c\n")
    refused(prepare(scratch(ctx.baked, ctx.tmp), data), "t.csv", "duplicate column", "text, label, text", "1 rows")


def two_schema_jsonl_refused(ctx):   # defect 4
    rows = [{"text": f"t{i}", "label": "x"} for i in range(30)] + [{"body": f"t{i}", "category": "x"} for i in range(30)]
    data = write(ctx.tmp / "t.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    refused(prepare(scratch(ctx.baked, ctx.tmp), data), "t.jsonl", "30 of 60 rows", "body, category")


def header_only_file(ctx):
    refused(prepare(scratch(ctx.baked, ctx.tmp), write(ctx.tmp / "t.csv", "text,label\n")), "header but no rows")


def single_class(ctx):
    data = write(ctx.tmp / "t.csv", "text,label\n" + "".join(f"t {i},billing\n" for i in range(20)))
    refused(prepare(scratch(ctx.baked, ctx.tmp), data), "single class", "'billing'")


def tiny_classes(ctx):
    data = write(ctx.tmp / "t.csv", "text,label\n" + "".join(f"t {i},billing\n" for i in range(20)) + "x 1,rare\n")
    refused(prepare(scratch(ctx.baked, ctx.tmp), data), "fewer than 3 rows", "'rare' (1)")


def config_type_checked_before_work(ctx):   # defect 10 + done 7
    project = scratch(ctx.baked, ctx.tmp)   # no prepared data: the type error must come first
    refused(run(["hfclf", "review", "review.similarity_threshold=abc"], project, check=False),
            "review.similarity_threshold='abc'", "expected float")
    refused(run(["hfclf", "prepare", "prepare.validation_size=abc"], project, check=False),
            "prepare.validation_size='abc'", "expected float")


def make_predict_byte_for_byte(ctx):   # defect 5 + done 3
    project = ctx.trained
    result = run(["make", "-s", "predict", f"TICKET={HOSTILE_TICKET}", "JSON=1"], project)
    assert json.loads(result.stdout.strip().splitlines()[-1])["text"] == HOSTILE_TICKET
    result = run(["make", "-s", "predict", "JSON=1"], project, TICKET=HOSTILE_TICKET)   # from the environment too
    assert json.loads(result.stdout.strip().splitlines()[-1])["text"] == HOSTILE_TICKET


def empty_texts_get_unknown(ctx):   # defect 6 (CLI, file, Predictor/pyfunc)
    project = ctx.trained
    line = run(["hfclf", "predict", "predict.json=true"], project, TICKET="   ").stdout.strip().splitlines()[-1]
    assert json.loads(line)["label"] == "UNKNOWN" and json.loads(line)["reason"] == "empty text"
    write(ctx.tmp / "in.csv", 'text\n""\n"   "\nwhere is my parcel\n')
    run(["hfclf", "predict", f"predict.input={ctx.tmp / 'in.csv'}", f"predict.output={ctx.tmp / 'out.csv'}"], project)
    rows = list(csv.DictReader(open(ctx.tmp / "out.csv", encoding="utf-8")))
    assert [r["predicted_label"] for r in rows[:2]] == ["UNKNOWN", "UNKNOWN"] and float(rows[0]["confidence"]) == 0
    from hfclf.ship.serving import texts_from
    from hfclf.train.modeling import Predictor

    predictor = Predictor.from_dir(project / "models/model")
    got = predictor.predict(texts_from([None, "", " \n", "refund my payment"]))
    assert [p.label for p in got[:3]] == ["UNKNOWN"] * 3 and got[3].top_k


def predictions_csv_is_formula_safe(ctx):   # done 4
    write(ctx.tmp / "in.csv", "text\n\"=cmd|'/c calc'!A1\"\n@SUM(1)\nplain\n")
    run(["hfclf", "predict", f"predict.input={ctx.tmp / 'in.csv'}", f"predict.output={ctx.tmp / 'out.csv'}"], ctx.trained)
    texts = [r["text"] for r in csv.DictReader(open(ctx.tmp / "out.csv", encoding="utf-8"))]
    assert texts == ["'=cmd|'/c calc'!A1", "'@SUM(1)", "plain"]


def predict_file_errors(ctx):
    refused(run(["hfclf", "predict", f"predict.input={ctx.tmp / 'missing.csv'}"], ctx.trained, check=False),
            "missing.csv' does not exist")
    write(ctx.tmp / "in.csv", "body,other\na,b\n")
    refused(run(["hfclf", "predict", f"predict.input={ctx.tmp / 'in.csv'}"], ctx.trained, check=False),
            "no text column", "body, other")


def demo_flag_is_formula_safe(ctx):   # defect 7
    from hfclf.ship.demo import Demo
    from hfclf.train.modeling import Predictor

    settings = yaml.safe_load((ctx.trained / "conf/demo.yaml").read_text())["demo"]
    app = Demo(Predictor.from_dir(ctx.trained / "models/model"), {**settings, "flagging_dir": str(ctx.tmp)})
    app.flag("=1+1 my parcel", "=cmd|'/c calc'!A1 (0.99)", "billing", "+evil")
    row = list(csv.reader(open(ctx.tmp / "feedback.csv", encoding="utf-8")))[1]
    assert [row[1], row[2], row[5]] == ["'=1+1 my parcel", "'=cmd|'/c", "'+evil"]


def demo_loopback_and_caps(ctx):
    from hfclf.ship.demo import Demo
    from hfclf.train.modeling import Predictor

    settings = yaml.safe_load((ctx.trained / "conf/demo.yaml").read_text())["demo"]
    assert settings["host"] == "127.0.0.1"
    app = Demo(Predictor.from_dir(ctx.trained / "models/model"), {**settings, "flagging_dir": str(ctx.tmp)})
    with pytest.raises(ValueError, match="at most"):
        app.classify("x" * (settings["max_chars"] + 1))
    with pytest.raises(ValueError, match="Type a ticket first"):
        app.classify("  \n ")


def publish_never_leaks_the_token(ctx):
    result = run(["hfclf", "publish"], ctx.trained, check=False, HF_TOKEN=TOKEN, HUB_REPO="acme/bad-input",
                 HF_HUB_OFFLINE="1")
    assert TOKEN not in result.stdout + result.stderr


def unreachable_mlflow_fails_fast(ctx):
    uri = f"http://127.0.0.1:{free_port()}"
    start = time.time()
    result = run(["hfclf", "evaluate"], ctx.trained, check=False, MLFLOW_TRACKING_URI=uri)
    refused(result, uri, "did not answer")
    ctx.timings["unreachable_mlflow_s"] = round(time.time() - start, 1)
    assert time.time() - start < 30


class _HalfUp(http.server.BaseHTTPRequestHandler):
    def do_GET(self):   # noqa: N802
        ok = self.path.startswith("/health")
        self.send_response(200 if ok else 503)
        self.end_headers()
        self.wfile.write(b"OK" if ok else b"unavailable")
    do_POST = do_GET

    def log_message(self, *args):
        pass


def half_up_mlflow_fails_fast_and_says_dvc_checkout(ctx):   # defects 9 + 11
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HalfUp)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        start = time.time()
        result = run(["hfclf", "card"], ctx.trained, check=False, MLFLOW_TRACKING_URI=uri, DVC_STAGE="card")
        refused(result, uri, "503", "`dvc checkout card`")
        assert time.time() - start < 40
    finally:
        server.shutdown()


def bake_answers_are_data(ctx):   # defect 8 + done 5
    answers = {"text_column": 'say "hi" \\ it\'s', "label_column": "lab<el>&", "base_model": 'C:\\m\\"x"'}
    result = subprocess.run([sys.executable, "-m", "cookiecutter", "--no-input", str(ROOT), "-o", str(ctx.tmp),
                             *(f"{k}={v}" for k, v in answers.items())], capture_output=True, text=True,
                            env=project_env(ctx.tmp), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    project = next(p for p in ctx.tmp.iterdir() if (p / "conf").is_dir())
    data = yaml.safe_load((project / "conf/data/default.yaml").read_text())
    model = yaml.safe_load((project / "conf/model/default.yaml").read_text())
    assert (data["text_column"], data["label_column"], model["name"]) == tuple(answers.values())


def bake_refuses_bad_answers_by_name(ctx):
    result = subprocess.run([sys.executable, "-m", "cookiecutter", "--no-input", str(ROOT), "-o", str(ctx.tmp),
                             "project_slug=Bad Slug!", "description=two\nlines"], capture_output=True, text=True,
                            env=project_env(ctx.tmp), timeout=300)
    assert result.returncode != 0 and "ERROR: description:" in result.stderr, result.stderr[-3000:]
    assert "Traceback" not in result.stderr.split("ERROR:")[0][-200:]


def kill9_recovery_is_covered(ctx):
    library_tests = (ROOT / "hfclf/tests/test_preflight.py").read_text(encoding="utf-8")
    assert "def test_killed_training_resumes_from_its_last_checkpoint" in library_tests


CASES = [none_is_a_class, numeric_labels_as_written_then_review_flags_variants, duplicate_header_refused,
         two_schema_jsonl_refused, header_only_file, single_class, tiny_classes, config_type_checked_before_work,
         make_predict_byte_for_byte, empty_texts_get_unknown, predictions_csv_is_formula_safe, predict_file_errors,
         demo_flag_is_formula_safe, demo_loopback_and_caps, publish_never_leaks_the_token,
         unreachable_mlflow_fails_fast, half_up_mlflow_fails_fast_and_says_dvc_checkout, bake_answers_are_data,
         bake_refuses_bad_answers_by_name, kill9_recovery_is_covered]
NEEDS_TRAINING = {make_predict_byte_for_byte, empty_texts_get_unknown, predictions_csv_is_formula_safe,
                  predict_file_errors, demo_flag_is_formula_safe, demo_loopback_and_caps,
                  publish_never_leaks_the_token, unreachable_mlflow_fails_fast,
                  half_up_mlflow_fails_fast_and_says_dvc_checkout}
NEEDS_BAKE = {none_is_a_class, numeric_labels_as_written_then_review_flags_variants, duplicate_header_refused,
              two_schema_jsonl_refused, header_only_file, single_class, tiny_classes, config_type_checked_before_work}


class Context:
    def __init__(self, request, tmp: Path, case):
        self.tmp, self.timings = tmp, {}
        self.baked = request.getfixturevalue("baked") if case in NEEDS_BAKE | NEEDS_TRAINING else None
        self.trained = request.getfixturevalue("trained") if case in NEEDS_TRAINING else None


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_bad_input(case, request, tmp_path):
    case(Context(request, tmp_path, case))
