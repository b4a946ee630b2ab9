"""Score a checkpoint on a preprocessed split without Ray: per-case Dice at shard resolution.

Validation and test splits keep every slice of a case, so reassembling the predicted slices
gives the whole volume (at the preprocessing size). Full LiTS metrics on the original grid
belong to the evaluation stage.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from livseg.data import load_split_numpy
from livseg.train.checkpoint import load_checkpoint
from livseg.train.counts import case_counts, dice_from_counts, summarise_cases
from livseg.train.models import is_volumetric


@torch.no_grad()
def predict_labels(model: torch.nn.Module, images: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """Argmax labels for (N, C, H, W) or (N, 1, X, Y, Z) float16 inputs → (N, …) uint8."""
    out = []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(images[start : start + batch_size].astype(np.float32))
        out.append(model(x).argmax(1).to(torch.uint8).numpy())
    return np.concatenate(out) if out else np.zeros((0,), np.uint8)


def score_split(checkpoint: str, data: str, split: str = "test") -> dict[str, Any]:
    """Per-case liver/tumour Dice of ``checkpoint`` on ``split`` of the shard set ``data``.

    Returns ``{"liver_dice", "tumour_dice", "cases", "per_case": {case_id: (liver, tumour)}}``;
    means follow ``summarise_cases`` (tumour over cases that have tumour).
    """
    model, meta = load_checkpoint(checkpoint)
    kind = "volumes" if is_volumetric(meta["arch"]) else "slices"
    data_arrays = load_split_numpy(data, split, kind)
    pred = predict_labels(model, data_arrays["image"])
    case_ids = data_arrays["case_id"]
    ids = np.unique(case_ids)
    index = torch.from_numpy(np.searchsorted(ids, case_ids))
    counts = case_counts(
        torch.from_numpy(pred).long(), torch.from_numpy(data_arrays["mask"]).long(), index, len(ids)
    )
    summary = summarise_cases(counts)
    dice = dice_from_counts(counts)
    present = counts[..., 2] > 0
    summary["per_case"] = {
        int(c): {
            "liver": float(dice[i, 0]),
            "tumour": float(dice[i, 1]) if present[i, 1] else None,
        }
        for i, c in enumerate(ids)
    }
    return summary
