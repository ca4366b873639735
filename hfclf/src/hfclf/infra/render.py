"""Writing results people read: Markdown tables, JSON files and plots (matplotlib, headless)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np


def write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n", encoding="utf-8")


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


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_confusion(matrix: np.ndarray, labels: list[str], path: Path, normalize: bool, title: str):
    """Save a confusion-matrix heatmap (counts or row-normalised) and return the figure."""
    plt = _pyplot()
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
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return fig


def plot_curves(history: list[dict], losses: list[tuple[int, float]], path: Path):
    """Training loss by step and validation macro-F1 / loss by epoch, side by side."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    if losses:
        steps, values = zip(*losses)
        left.plot(steps, values, label="train loss")
    if history:
        left.plot([h["step"] for h in history], [h["val_loss"] for h in history], "o-", label="validation loss")
        right.plot([h["epoch"] for h in history], [h["val_macro_f1"] for h in history], "o-", label="macro-F1")
        right.plot([h["epoch"] for h in history], [h["val_accuracy"] for h in history], "s--", label="accuracy")
    left.set_xlabel("step")
    left.set_title("loss")
    left.legend()
    right.set_xlabel("epoch")
    right.set_title("validation")
    right.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return fig
