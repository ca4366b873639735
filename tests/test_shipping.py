"""Shipping, on the project whose whole pipeline ran (`trained_project`, the real all-MiniLM-L6-v2
fine-tuned on the Bitext sample): `make publish` prints an exact upload plan, the staged card holds
the real metrics and its usage snippet works, the registered MLflow model predicts, and the Gradio
demo answers in a real browser (Debian's Chromium driven by Playwright)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import demo_answer, project_env, run

pytestmark = pytest.mark.slow



def test_make_publish_prints_an_exact_upload_plan(trained_project, tmp_path):
    env = {"HF_HOME": str(tmp_path / "hf-home"), "HF_TOKEN": ""}   # no token anywhere: a dry run
    result = run(["make", "publish"], trained_project, **env)
    out = result.stdout
    assert "Running stage" not in out                      # `make all` already staged the card
    assert "DRY RUN - nothing will be uploaded." in out and "visibility: private" in out
    staged = sorted((trained_project / "dist/model").iterdir())
    assert {p.name for p in staged} >= {"README.md", "model.safetensors", "config.json", "tokenizer.json",
                                         "labels.json", "classifier.json", "confusion_matrix.png"}
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("  ") and " B " in line]
    assert listed == [p.name for p in staged]              # exactly the staged files, nothing else
    for path in staged:
        assert f"{path.stat().st_size:,} B" in out, path.name
    assert f"({len(staged)} files," in out


def test_staged_card_holds_the_real_metrics_and_its_snippet_works(trained_project):
    from huggingface_hub import ModelCard

    folder = trained_project / "dist/model"
    card = ModelCard.load(folder / "README.md")
    metrics = json.loads((trained_project / "reports/metrics.json").read_text())
    values = {(r.metric_type, r.metric_config): r.metric_value for r in card.data.eval_results}
    assert values[("accuracy", None)] == round(metrics["accuracy"], 4) and values[("accuracy", None)] > 0.9
    assert values[("f1", "macro")] == round(metrics["macro_f1"], 4)
    assert card.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert card.data.pipeline_tag == "text-classification" and len(card.data.widget) == 4
    registry = json.loads((trained_project / "reports/registry.json").read_text())
    assert f"`{registry['name']}` version {registry['version']}" in card.content
    lock = (trained_project / "dvc.lock").read_text()
    assert "## Reproducibility" in card.content and card.content.count("`models/model` ") == 1
    model_hash = lock.split("path: models/model\n", 1)[1].split("md5: ", 1)[1][:12]
    assert model_hash in card.content                      # dvc.lock's hash of the model folder

    check = ("import sys, json; from hfclf.ship import bundle, hub_metadata; "
             "from huggingface_hub import ModelCard; c = ModelCard.load('dist/model/README.md'); "
             "assert hub_metadata.validate(c) == [], hub_metadata.validate(c); "
             "exec(bundle.retarget(bundle.extract_snippet(c.content), 'dist/model'), {})")
    out = run([sys.executable, "-c", check], trained_project).stdout.splitlines()
    assert out[0].split()[0] == "REFUND" and out[1].split()[0] == "SHIPPING_ADDRESS"


def test_registered_mlflow_model_predicts_without_the_project_installed(trained_project, tmp_path):
    registry = json.loads((trained_project / "reports/registry.json").read_text())
    script = (
        "import json, sys, mlflow, pandas as pd\n"
        f"mlflow.set_tracking_uri('sqlite:///{trained_project / 'mlflow.db'}')\n"
        f"model = mlflow.pyfunc.load_model('{registry['model_uri']}')\n"
        f"rows = pd.read_csv('{trained_project / 'reports/predictions.csv'}').head(60)\n"
        "out = model.predict(rows[['text']])\n"
        "print(json.dumps({'accuracy': float((out['label'] == rows['actual']).mean()), 'labels': sorted(set(out['label']))}))\n")
    env = {k: v for k, v in project_env(trained_project).items() if k != "PYTHONPATH"}   # only MLflow's copy of the code
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    scores = json.loads(result.stdout.strip().splitlines()[-1])
    assert scores["accuracy"] > 0.9 and set(scores["labels"]) <= set(
        json.loads((trained_project / "dist/model/labels.json").read_text())["labels"] + ["UNKNOWN"])


def test_make_demo_answers_in_a_real_browser(trained_project):
    answer = demo_answer(trained_project, "I want my money back for the broken item I received", "Predicted label")
    assert answer.split()[0] == "REFUND"
