"""Tumour-aware sampling: tumour slices repeated in each epoch's training rows so that about a
chosen share of what the model sees holds tumour (nnU-Net forces a third of its patches onto
foreground; liver tumours fill a few percent of the slices, so a plain epoch barely shows them).
The repeats differ after augmentation; validation is never resampled."""

from __future__ import annotations

import math
from typing import Any


def tumour_repeats(total: int, tumour: int, share: float) -> int:
    """How many times each tumour row appears so that tumour rows make up at least ``share``
    of the epoch (1: as they are). ``total`` rows, ``tumour`` of them with tumour."""
    if not 0.0 <= share < 1.0:
        raise ValueError(f"tumour_share={share}: must be within [0, 1)")
    if share == 0 or tumour == 0 or tumour >= total or tumour / total >= share:
        return 1
    return max(1, math.ceil(share * (total - tumour) / ((1.0 - share) * tumour)))


def oversample_tumour(train: Any, share: float) -> tuple[Any, int]:
    """``train``, a materialised ``ray.data.Dataset`` of slice rows with ``has_tumour``, with
    its tumour rows repeated (``tumour_repeats``); returns the dataset and the repeat count.
    The union is lazy but runs no tasks; do not add a map or projection after it (see
    ``livseg.train.runs._datasets``)."""
    from ray.data.expressions import col

    repeats = tumour_repeats(train.count(), int(train.sum("has_tumour") or 0), share)
    if repeats == 1:
        return train, 1
    tumour = train.filter(expr=col("has_tumour") == True).materialize()  # noqa: E712
    return train.union(*[tumour] * (repeats - 1)), repeats
