"""Lesion post-processing of predicted labels (numpy in, numpy out).

A model trained on slices predicts tumour specks at liver edges and vessels, and may label a
necrotic core as liver inside a tumour's rim. ``LesionRule`` says what to do about both: tumour
components (face-connected, as the LiTS detection rule counts lesions) smaller than
``min_volume_mm3`` become liver, and cavities enclosed by tumour become tumour. The values are
chosen on the validation split (``livseg.evaluate.choose_lesion_rule``) and recorded in the
checkpoint, so the Segmenter applies what validation chose.
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

    def __post_init__(self) -> None:
        if not np.isfinite(self.min_volume_mm3) or self.min_volume_mm3 < 0:
            raise ValueError(f"min_volume_mm3={self.min_volume_mm3}: must be a volume ≥ 0 mm³")

    @property
    def changes_nothing(self) -> bool:
        return self.min_volume_mm3 == 0 and not self.fill_holes


def clean_lesions(labels: np.ndarray, spacing: Sequence[float], rule: LesionRule) -> np.ndarray:
    """``labels`` (X, Y, Z) uint8 LiTS labels with ``rule`` applied; ``spacing`` (3,) mm."""
    tumour = labels == TUMOUR
    if rule.changes_nothing or not tumour.any():
        return labels
    box = bounding_box(tumour)
    out = labels.copy()
    part = tumour[box]
    if rule.fill_holes:
        part = ndimage.binary_fill_holes(part)
    if rule.min_volume_mm3 > 0:
        ids, n = ndimage.label(part, FACES)
        voxel_mm3 = float(np.prod(np.asarray(spacing, np.float64)))
        sizes = np.bincount(ids.ravel(), minlength=n + 1) * voxel_mm3
        keep = sizes >= rule.min_volume_mm3
        keep[0] = False
        part = keep[ids]
    region = out[box]
    region[(region == TUMOUR) & ~part] = LIVER
    region[part] = TUMOUR  # filled holes lie inside tumour, so inside the liver
    return out
