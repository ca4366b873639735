"""The folder that ships, `dist/model/` - exactly what `make publish` uploads - and the usage
snippet of its card, whose one `model_id = "..."` line names the repo the folder is published to.

`stage_folder` writes the folder whole (weights, config, tokenizer, labels.json, classifier.json,
the card, the confusion matrix) through infra/files.py, so a failure never leaves half of it;
`retarget` points the snippet at another repo (publish does, when the target is known).

A multi-label model (classifier.json `task: multi_label`) gets its own snippet,
`multi_label_snippet`: the pipeline's per-label sigmoid scores against the per-label thresholds of
classifier.json; its labels.json records the task and those thresholds too.

The library code that ships with a model is chosen here too: `INFERENCE_MODULES`, the part of
hfclf that loads and runs a trained model (light dependencies: torch, transformers, numpy), which
`copy_library` copies as `hfclf/...` into the MLflow model (register.py) and the Space (space.py).
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import hfclf
from hfclf.data import multilabel as label_sets
from hfclf.infra.files import staged_folder

LIBRARY_DIR = Path(hfclf.__file__).resolve().parent
# The modules (paths inside hfclf/) that load and run a trained model: what every shipped copy needs.
INFERENCE_MODULES = ("__init__.py", "infra/__init__.py", "infra/openmp.py", "infra/errors.py", "infra/compute.py",
                     "infra/progress.py", "train/__init__.py", "train/batching.py", "train/bert.py",
                     "train/bert_tokenizer.py", "train/modeling.py", "ship/__init__.py")

# Files of the fine-tuned model folder that ship (tokenizer files vary by model family).
MODEL_FILES = ("model.safetensors", "config.json", "classifier.json", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "vocab.txt", "vocab.json", "merges.txt", "spm.model",
               "sentencepiece.bpe.model", "added_tokens.json")
CONFUSION_IMAGE = "confusion_matrix.png"
LABELS_FILE = "labels.json"
CARD_FILE = "README.md"
# The one line of the usage snippet that names the model; `retarget` and the snippet test rely on it.
MODEL_ID_LINE = re.compile(r'^model_id = "[^"\n]*"', re.M)


def usage_snippet(repo_id: str, threshold) -> str:
    """A runnable example for the published folder: transformers pipeline + the saved abstain threshold."""
    return "\n".join([
        "```python",
        "import json",
        "import math",
        "",
        "from transformers import pipeline",
        "from transformers.utils import cached_file",
        "",
        f'model_id = "{repo_id}"',
        'classify = pipeline("text-classification", model=model_id, top_k=None, function_to_apply="none")',
        "# The temperature fitted on validation (calibrated confidences) and the abstain threshold",
        "# chosen for this model (null = always answer); below it, say UNKNOWN.",
        'with open(cached_file(model_id, "classifier.json"), encoding="utf-8") as f:',
        "    meta = json.load(f)",
        'threshold, temperature = meta["abstain_threshold"], meta.get("temperature") or 1.0',
        "",
        'tickets = ["I want my money back for the broken item", "how do I change my shipping address?"]',
        "for ticket, logits in zip(tickets, classify(tickets, truncation=True)):",
        '    top = max(s["score"] for s in logits)',
        '    total = sum(math.exp((s["score"] - top) / temperature) for s in logits)',
        '    best = max(logits, key=lambda s: s["score"])',
        '    confidence = 1 / total   # softmax(logits / temperature) of the top class',
        '    label = best["label"] if threshold is None or confidence >= threshold else "UNKNOWN"',
        '    print(f"{label:<20} {confidence:.3f}  {ticket}")',
        "```",
    ])


def multi_label_snippet(repo_id: str) -> str:
    """A runnable example for a published multi-label folder: transformers pipeline (one sigmoid score
    per label, from the model's problem_type) + the per-label thresholds saved in classifier.json."""
    return "\n".join([
        "```python",
        "import json",
        "",
        "from transformers import pipeline",
        "from transformers.utils import cached_file",
        "",
        f'model_id = "{repo_id}"',
        "# Multi-label: one independent (sigmoid) score per label; every label whose score reaches its",
        "# own threshold applies - several labels, or none. The thresholds were tuned on validation.",
        'classify = pipeline("text-classification", model=model_id, top_k=None)',
        'with open(cached_file(model_id, "classifier.json"), encoding="utf-8") as f:',
        '    thresholds = json.load(f)["thresholds"]   # one per label, in the model\'s label order',
        "label_ids = classify.model.config.label2id",
        "",
        'tickets = ["I was charged twice and my parcel never arrived", "how do I change my shipping address?"]',
        "for ticket, scores in zip(tickets, classify(tickets, truncation=True)):",
        '    labels = sorted(s["label"] for s in scores if s["score"] >= thresholds[label_ids[s["label"]]])',
        '    print(f"{json.dumps(labels)}  {ticket}")',
        "```",
    ])


def extract_snippet(card_text: str) -> str:
    """The Python code of the card's usage snippet (the first ```python block)."""
    match = re.search(r"```python\n(.*?)```", card_text, re.S)
    if not match:
        raise ValueError("the card has no ```python snippet")
    return match.group(1)


def retarget(card_text: str, repo_id: str) -> str:
    """The card with its usage snippet pointing at `repo_id`."""
    return MODEL_ID_LINE.sub(f'model_id = "{repo_id}"', card_text, count=1)


def named_repo(card_text: str) -> str | None:
    match = MODEL_ID_LINE.search(card_text)
    return match.group(0).split('"')[1] if match else None


def stage_folder(model_dir: Path, out_dir: Path, card_text: str, confusion_png: Path) -> list[Path]:
    """Write out_dir whole (weights, config, tokenizer, label mapping, classifier.json, card, image).

    Built in a temporary sibling folder and swapped in (infra/files.py), so a failure never leaves half a folder.
    """
    meta = json.loads((model_dir / "classifier.json").read_text(encoding="utf-8"))
    with staged_folder(out_dir) as tmp:
        for name in MODEL_FILES:
            if (model_dir / name).exists():
                shutil.copy2(model_dir / name, tmp / name)
        tokenizer_config = tmp / "tokenizer_config.json"
        if tokenizer_config.exists():  # truncate where training truncated, also in `pipeline(...)`
            config = json.loads(tokenizer_config.read_text(encoding="utf-8"))
            config["model_max_length"] = meta["max_length"]
            tokenizer_config.write_text(json.dumps(config, indent=2), encoding="utf-8")
        labels = meta["labels"]
        (tmp / LABELS_FILE).write_text(json.dumps({
            "labels": labels, "id2label": {str(i): label for i, label in enumerate(labels)},
            "label2id": {label: i for i, label in enumerate(labels)},
            "abstain_threshold": meta.get("abstain_threshold"), **_multi_label_entries(meta)}, indent=2),
            encoding="utf-8")
        if confusion_png.exists():
            shutil.copy2(confusion_png, tmp / CONFUSION_IMAGE)
        (tmp / CARD_FILE).write_text(card_text, encoding="utf-8")
    return sorted(out_dir.iterdir())


def _multi_label_entries(meta: dict) -> dict:
    """labels.json's extra keys for a multi-label model (none for a single-label one)."""
    if not label_sets.is_multi_label(meta):
        return {}
    return {"task": label_sets.MULTI, "thresholds": meta.get("thresholds")}


def copy_library(modules, dest: Path) -> Path:
    """Copy `modules` (paths inside hfclf/) to dest/hfclf/; returns that folder."""
    library = dest / "hfclf"
    for name in modules:
        (library / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(LIBRARY_DIR / name, library / name)
    return library
