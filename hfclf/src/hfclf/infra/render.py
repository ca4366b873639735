"""Rendering results people read - the shared helpers, in one place: JSON files, Markdown
(tables, percentages) and plots (matplotlib, headless), plus the two plots more than one stage draws
(confusion matrix, training curves).

The rule: what more than one report uses lives here; a report's own text builder or plot (the
review, the failure analysis, the model card, the dataset shortlist ...) stays next to the data it
describes, in that phase's module, and builds on these helpers - never a private copy of them.
Files are written atomically (infra/files.py).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from hfclf.infra import files


def write_json(path: Path, payload: dict) -> None:
    """`payload` as indented JSON (numpy numbers, arrays and paths too), written atomically."""
    files.write_text(path, json.dumps(payload, indent=2, default=_jsonable) + "\n")


def _jsonable(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def md_table(header: Sequence[str], rows: Iterable[Sequence]) -> str:
    """A GitHub-flavoured Markdown table; floats get 4 decimals, pipes in cells are escaped."""
    def cell(value) -> str:
        text = f"{value:.4f}" if isinstance(value, float) else str(value)
        return text.replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def pct(value, missing: str = "—") -> str:
    """A share as a percentage with one decimal (0.1234 -> "12.3%"); `missing` for None / NaN."""
    if value is None or (isinstance(value, (float, np.floating)) and math.isnan(value)):
        return missing
    return f"{100 * float(value):.1f}%"


def pyplot():
    """matplotlib.pyplot on the headless Agg backend (stages run on servers and in CI)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


_pyplot = pyplot   # the name data/profiling.py imports


def save_figure(fig, path: Path, dpi: int = 110, **savefig):
    """Lay out, save (atomically, format from the file name) and close `fig`; returns it for MLflow."""
    fig.tight_layout()
    with files.atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or None, **savefig)
    pyplot().close(fig)
    return fig


def plot_confusion(matrix: np.ndarray, labels: list[str], path: Path, normalize: bool, title: str):
    """Save a confusion-matrix heatmap (counts or row-normalised) and return the figure."""
    plt = pyplot()
    values = matrix.astype(float)
    if normalize:
        values = np.divide(values, values.sum(1, keepdims=True), out=np.zeros_like(values),
                           where=values.sum(1, keepdims=True) > 0)
    size = max(5.0, 0.45 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(title)
    if len(labels) <= 30:
        threshold = values.max() / 2 if values.max() else 0.5
        for i in range(len(labels)):
            for j in range(len(labels)):
                if values[i, j]:
                    text = f"{values[i, j]:.2f}" if normalize else str(int(values[i, j]))
                    ax.text(j, i, text, ha="center", va="center", fontsize=6,
                            color="white" if values[i, j] > threshold else "black")
    return save_figure(fig, path, dpi=120)


def plot_curves(history: list[dict], losses: list[tuple[int, float]], cooldown: dict | None, path: Path):
    """Training loss by step and validation macro-F1 / loss by epoch, side by side; the cooldown
    after early stopping (loop.TrainResult.cooldown), if any, shaded."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    if losses:
        steps, values = zip(*losses)
        left.plot(steps, values, label="train loss")
    if history:
        left.plot([h["step"] for h in history], [h["val_loss"] for h in history], "o-", label="validation loss")
        right.plot([h["epoch"] for h in history], [h["val_macro_f1"] for h in history], "o-", label="macro-F1")
        right.plot([h["epoch"] for h in history], [h["val_accuracy"] for h in history], "s--", label="accuracy")
    if cooldown:
        right.axvspan(cooldown["from_epoch"], cooldown["to_epoch"], color="tab:green", alpha=0.15,
                      label=f"cooldown from the best weights (epoch {cooldown['best_before']['epoch']:.2f})")
    left.set_xlabel("step")
    left.set_title("loss")
    left.legend()
    right.set_xlabel("epoch")
    right.set_title("validation")
    right.legend()
    return save_figure(fig, path)
