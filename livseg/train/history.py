"""A run's history: ``history.csv`` (one row per epoch) and ``curves.png`` (the study's
Figure 5.1, loss and foreground IoU, train vs validation)."""

from __future__ import annotations

import csv
import io
from typing import Any

from livseg.figures import figure_png, pyplot
from livseg.io import storage


def history_csv(history: list[dict[str, Any]]) -> str:
    """One row per epoch, columns in first-seen order."""
    columns: list[str] = []
    for row in history:
        columns += [k for k in row if k not in columns]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns)
    writer.writeheader()
    writer.writerows(history)
    return out.getvalue()


def curves_png(history: list[dict[str, Any]], title: str) -> bytes:
    """Loss and foreground IoU per epoch, train vs validation, as PNG bytes."""
    plt = pyplot()
    epochs = [row["epoch"] for row in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "loss", "loss"), (axes[1], "iou", "foreground IoU")):
        ax.plot(epochs, [row[f"train_{key}"] for row in history], "o-", label="train")
        ax.plot(epochs, [row[f"val_{key}"] for row in history], "s-", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    return figure_png(fig)


def write_history(history: list[dict[str, Any]], folder: str, title: str) -> None:
    """``history.csv`` and ``curves.png`` into ``folder`` (local or ``s3://``)."""
    storage.write_text(storage.join(folder, "history.csv"), history_csv(history))
    storage.write_bytes(storage.join(folder, "curves.png"), curves_png(history, title))
