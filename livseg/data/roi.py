"""The liver region of interest of a cascade's tumour stage (Christ et al. 2016: segment the
liver first, then the tumour inside its box at higher resolution).

One rule for training and inference: the box around the liver (reference labels when making
shards, stage 1's prediction when segmenting), square in-plane and grown by a share of its side
so small errors of stage 1 do not cut the liver, plus whole slices above and below.

The tumour stage also sees each case's HU shifted so that its liver's median sits at
``LIVER_REFERENCE_HU`` (``liver_shift``; the reference liver when making shards, stage 1's when
segmenting). The liver's own HU ranges from ~70 (arterial phase, fatty liver) to ~130
(late portal-venous), so under the split-wide z-score a hypodense tumour in a bright liver has
the HU of a normal liver in another case; relative to its own liver it is dark in every phase.
The gain it measured: ``tests/integration/test_quality.py`` and the README's Cascade section.
Stage 1's label 1 can include tumour it missed, which lowers the median a little
in cases with a large tumour burden.
"""

from __future__ import annotations

import numpy as np

MIN_MARGIN_PIXELS = 4
LIVER_REFERENCE_HU = 100.0  # a portal-venous liver (LiTS livers: ~60-160 HU, median ~100)


def liver_shift(hu: np.ndarray, liver: np.ndarray) -> float:
    """HU to add to ``hu`` so that the median over ``liver`` (a boolean mask of the same shape,
    liver without tumour) becomes ``LIVER_REFERENCE_HU``; 0.0 when the mask is empty."""
    if hu.shape != liver.shape:
        raise ValueError(f"hu {hu.shape} and liver mask {liver.shape} differ in shape")
    if not liver.any():
        return 0.0
    return LIVER_REFERENCE_HU - float(np.median(hu[liver]))


def shift_to_liver(hu: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``hu`` shifted by ``liver_shift`` over ``labels == 1``: the one rule for ROI shards
    (reference labels) and the cascade (stage 1's labels)."""
    return hu + np.float32(liver_shift(hu, labels == 1))


def liver_box(
    labels: np.ndarray, margin: float, z_margin: int = 0
) -> tuple[slice, slice, slice] | None:
    """Box of ``labels > 0`` in an (X, Y, Z) volume: in-plane square (the longer side), grown by
    ``margin`` × side on each side (at least 4 pixels), clipped to the volume; Z grown by
    ``z_margin`` slices. None without liver."""
    if labels.ndim != 3:
        raise ValueError(f"labels of shape {labels.shape}: expected (X, Y, Z)")
    if not 0 <= margin <= 1 or z_margin < 0:
        raise ValueError(f"margin={margin}, z_margin={z_margin}: expected 0 ≤ margin ≤ 1, z ≥ 0")
    present = [np.flatnonzero(np.any(labels > 0, axis=other)) for other in ((1, 2), (0, 2), (0, 1))]
    if not present[0].size:
        return None
    (x0, x1), (y0, y1) = ((int(p[0]), int(p[-1]) + 1) for p in present[:2])
    side = max(x1 - x0, y1 - y0)
    grow = max(int(round(margin * side)), MIN_MARGIN_PIXELS)
    box = []
    for (low, high), n in zip(((x0, x1), (y0, y1)), labels.shape[:2], strict=True):
        centre = (low + high) / 2
        low = int(np.floor(centre - side / 2)) - grow
        box.append(slice(max(low, 0), min(low + side + 2 * grow, n)))
    z = present[2]
    box.append(slice(max(int(z[0]) - z_margin, 0), min(int(z[-1]) + 1 + z_margin, labels.shape[2])))
    return tuple(box)


def roi_arrays(
    hu: np.ndarray, labels: np.ndarray | None, margin: float, z_margin: int, shift: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """``hu`` (and ``labels``) cropped to the liver box of ``labels``; unchanged without liver.
    ``shift``: the crop's HU also shifted to its liver (``shift_to_liver``)."""
    box = None if labels is None else liver_box(labels, margin, z_margin)
    if box is None:
        return hu, labels
    hu, labels = hu[box], labels[box]
    return (shift_to_liver(hu, labels) if shift else hu), labels
