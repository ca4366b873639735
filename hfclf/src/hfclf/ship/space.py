"""The demo as a Hugging Face Space: the folder `make publish HUB_SPACE=...` uploads.

`build_space` writes app.py (downloads the published model, serves ship/demo.py's app),
requirements.txt, README.md (the Space's metadata), demo.json (settings and examples) and the part
of the hfclf library the app runs - prediction and the demo, nothing of the pipeline - as
`hfclf/...`, so the Space imports the same code the project ran. Written atomically (infra/files.py).
"""
from __future__ import annotations

import json
from pathlib import Path

from hfclf.infra.files import staged_folder
from hfclf.ship import bundle

# The library modules the Space's app imports: light on dependencies - torch, transformers,
# gradio, pandas - and nothing of Hydra, MLflow or DVC.
SPACE_MODULES = (*bundle.INFERENCE_MODULES, "infra/files.py", "ship/predict.py", "ship/demo.py")

SPACE_APP = '''"""Gradio Space for {title}: downloads the model from the Hub and serves the project's demo."""
import json
from pathlib import Path

from huggingface_hub import snapshot_download

from hfclf.ship.demo import build_app
from hfclf.train.modeling import Predictor

MODEL_REPO = "{model_repo}"

config = json.loads(Path(__file__).with_name("demo.json").read_text(encoding="utf-8"))
predictor = Predictor.from_dir(snapshot_download(MODEL_REPO))
demo = build_app(predictor, config["settings"], config["examples"])
'''


def requirements() -> list[str]:
    """What the app imports, pinned where the behaviour depends on the version (as installed now)."""
    from importlib.metadata import version

    return [f"gradio=={version('gradio')}", f"transformers=={version('transformers')}",
            f"torch=={version('torch').split('+')[0]}", "huggingface_hub", "pandas", "numpy", "tqdm"]


def what_it_does(multi_label: bool) -> str:
    """The README's sentence on what a visitor gets back."""
    if multi_label:
        return ("type a support ticket, get every label whose score reaches that label's own threshold (several "
                "labels, or none), with the scores.")
    return "type a support ticket, get the top labels with their confidence (`UNKNOWN` below the abstain threshold)."


def build_space(space_dir: Path, model_repo: str, demo_settings: dict, examples: list[list[str]], title: str,
                license_: str, multi_label: bool = False) -> None:
    """Generate the Space folder: app.py, requirements.txt, README.md (Space metadata), demo.json and
    the library's inference and demo modules; written in a temporary folder, then swapped in.
    `multi_label`: the model predicts label sets (classifier.json's task), which the README says."""
    import gradio

    with staged_folder(space_dir) as tmp:
        bundle.copy_library(SPACE_MODULES, tmp)
        settings = {**demo_settings, "host": "0.0.0.0", "port": 7860, "flagging_dir": "flagged"}
        (tmp / "demo.json").write_text(json.dumps({"settings": settings, "examples": examples}, indent=2),
                                       encoding="utf-8")
        (tmp / "app.py").write_text(SPACE_APP.format(model_repo=model_repo, title=title), encoding="utf-8")
        (tmp / "requirements.txt").write_text("\n".join(requirements()) + "\n", encoding="utf-8")
        (tmp / "README.md").write_text("\n".join([
            "---", f"title: {title}", "emoji: 🏷️", "colorFrom: blue", "colorTo: gray", "sdk: gradio",
            f"sdk_version: {gradio.__version__}", "app_file: app.py", "pinned: false", f"license: {license_}",
            "models:", f"- {model_repo}", "---", "",
            f"# {title}", "", f"Demo of [`{model_repo}`](https://huggingface.co/{model_repo}): {what_it_does(multi_label)}",
            "A private model repo needs an `HF_TOKEN` secret in this Space's settings.", ""]), encoding="utf-8")
