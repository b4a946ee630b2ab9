"""Lesion post-processing of predicted labels (numpy in, numpy out).

A model trained on slices predicts tumour specks at liver edges and vessels, may label a
necrotic core as liver inside a tumour's rim, and a tumour stage that sees the liver box may
call a dark neighbour of the liver (bowel, muscle at 40-60 HU, like a hypodense lesion) tumour
and, through it, liver. ``LesionRule`` says what to do about each: tumour components
(face-connected, as the LiTS detection rule counts lesions) smaller than ``min_volume_mm3``
become liver, cavities enclosed by tumour become tumour, and components with more than
``max_outside`` of their border on background become background — a liver lesion lies in the
liver (the generated reference lesions, surface ones included: at most 0.47 of their border
outside, 0.14 median; such false positives of a cascade: 0.4-0.85). The values are chosen on
the validation split (``livseg.evaluate.choose_lesion_rule``) and recorded in the checkpoint, so
the Segmenter applies what validation chose.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from livseg.data import LIVER, TUMOUR, bounding_box

FACES = ndimage.generate_binary_structure(3, 1)


@dataclass(frozen=True)
class LesionRule:
    """Post-processing of tumour components; the defaults change nothing."""

    min_volume_mm3: float = 0.0  # smaller tumour components become liver
    fill_holes: bool = False  # cavities enclosed by tumour become tumour
    # Components with more than this share of their border (the face neighbours around them)
    # on background become background; 1.0 keeps them all.
    max_outside: float = 1.0

    def __post_init__(self) -> None:
        if not np.isfinite(self.min_volume_mm3) or self.min_volume_mm3 < 0:
            raise ValueError(f"min_volume_mm3={self.min_volume_mm3}: must be a volume ≥ 0 mm³")
        if not 0 <= self.max_outside <= 1:
            raise ValueError(f"max_outside={self.max_outside}: must be a share within [0, 1]")

    @property
    def changes_nothing(self) -> bool:
        return self.min_volume_mm3 == 0 and not self.fill_holes and self.max_outside == 1


def outside_shares(ids: np.ndarray, n: int, labels: np.ndarray) -> np.ndarray:
    """Per component of ``ids`` (labelled 1..n, same shape as ``labels``): the share of the
    voxels face-adjacent to it, outside it, that ``labels`` has as background (index 0 unused;
    0 for a component without neighbours)."""
    shares = np.zeros(n + 1)
    for k, found in enumerate(ndimage.find_objects(ids), start=1):
        if found is None:
            continue
        box = tuple(
            slice(max(s.start - 1, 0), min(s.stop + 1, size))
            for s, size in zip(found, ids.shape, strict=True)
        )
        component = ids[box] == k
        border = ndimage.binary_dilation(component, FACES) & ~component
        if border.any():
            shares[k] = float(np.mean(labels[box][border] == 0))
    return shares


def clean_lesions(labels: np.ndarray, spacing: Sequence[float], rule: LesionRule) -> np.ndarray:
    """``labels`` (X, Y, Z) uint8 LiTS labels with ``rule`` applied; ``spacing`` (3,) mm."""
    tumour = labels == TUMOUR
    if rule.changes_nothing or not tumour.any():
        return labels
    box = bounding_box(tumour, margin=1)  # one voxel around: the border of each component
    out = labels.copy()
    region = out[box]
    part = tumour[box]
    if rule.fill_holes:
        part = ndimage.binary_fill_holes(part)
    ids, n = ndimage.label(part, FACES)
    keep = np.ones(n + 1, bool)
    if rule.min_volume_mm3 > 0:
        voxel_mm3 = float(np.prod(np.asarray(spacing, np.float64)))
        keep = np.bincount(ids.ravel(), minlength=n + 1) * voxel_mm3 >= rule.min_volume_mm3
    outside = np.zeros(n + 1, bool)
    if rule.max_outside < 1:  # whatever their size: never liver either
        outside = outside_shares(ids, n, region) > rule.max_outside
        keep &= ~outside
    keep[0] = outside[0] = False
    region[(region == TUMOUR) & ~keep[ids]] = LIVER
    region[keep[ids]] = TUMOUR  # filled holes lie inside tumour, so inside the liver
    region[outside[ids]] = 0  # after: a filled outside component goes whole
    return out
