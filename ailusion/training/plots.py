"""The pictures a training run leaves: learning curves and the confusion matrix."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    from ..rundir.files import atomic_path

    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def curves(history: list[dict], path: Path, eval_accuracy: float | None = None) -> None:
    """Loss and accuracy per epoch, training and validation (and the eval accuracy, dashed)."""
    plt = _pyplot()
    epochs = [row["epoch"] for row in history]
    fig, (loss, acc) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for split, style in (("train", "-o"), ("val", "-s")):
        name = "training" if split == "train" else "validation"
        loss.plot(epochs, [r[f"{split}_loss"] for r in history], style, label=name)
        acc.plot(epochs, [r[f"{split}_accuracy"] for r in history], style, label=name)
    if eval_accuracy is not None:
        acc.axhline(eval_accuracy, linestyle="--", color="k", label=f"eval {eval_accuracy:.3f}")
    loss.set(title="loss (cross-entropy)", xlabel="epoch")
    acc.set(title="accuracy", xlabel="epoch", ylim=(0, 1.02))
    for ax in (loss, acc):
        ax.grid(alpha=0.3)
        ax.legend()
    _save(fig, path)
    plt.close(fig)


def confusion(matrix: np.ndarray, classes: list[str], path: Path, title: str) -> None:
    """Counts of (true class, predicted class), each row shaded by its share of the true class."""
    plt = _pyplot()
    matrix = np.asarray(matrix)
    k = len(classes)
    size = min(3 + 0.5 * k, 16)
    fig, ax = plt.subplots(figsize=(size + 1, size), constrained_layout=True)
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    if k <= 30:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center",
                        color="white" if shares[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xticks(range(k), classes, rotation=45, ha="right")
    ax.set_yticks(range(k), classes)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.colorbar(image, ax=ax, label="share of the true class")
    _save(fig, path)
    plt.close(fig)
