"""Lesion post-processing of predicted labels (numpy in, numpy out).

A model trained on slices predicts tumour specks at liver edges and vessels, may label a
necrotic core as liver inside a tumour's rim, and a tumour stage that sees the liver box may
call a dark neighbour of the liver (bowel, muscle at 40-60 HU, like a hypodense lesion) tumour
and, through it, liver. ``LesionRule`` says what to do about each: tumour components
(face-connected, as the LiTS detection rule counts lesions) smaller than ``min_volume_mm3``
become liver, cavities enclosed by tumour become tumour, and components with more than
``max_outside`` of their surface (by area) on background become background — a liver lesion
lies in the liver (the generated training split's reference lesions ≥ 10 mm, surface ones
included: at most 0.46 of their surface outside, median 0.14; a cascade's false positives on
the validation split: 0.43-0.59, its detected lesions ≤ 0.40). Last, given the HU volume, each
kept component may grow into its paler margin (``grow_mm``, ``grow_cut``:
``livseg.inference.growth``). The values are chosen on the validation split
(``livseg.evaluate.choose_lesion_rule``) and recorded in the checkpoint, so the Segmenter
applies what validation chose.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from livseg.data import LIVER, TUMOUR, bounding_box
from livseg.inference.growth import FACES, grow_lesions


@dataclass(frozen=True)
class LesionRule:
    """Post-processing of tumour components; the defaults change nothing."""

    min_volume_mm3: float = 0.0  # smaller tumour components become liver
    fill_holes: bool = False  # cavities enclosed by tumour become tumour
    # Components with more than this share of their surface (by area) on background become
    # background; 1.0 keeps them all.
    max_outside: float = 1.0
    # Kept components grow into adjacent liver of lesion-like HU up to this distance (mm; 0:
    # no growth), where the HU lies within ``grow_cut`` of the way from the lesion's to the
    # liver's (``livseg.inference.growth``).
    grow_mm: float = 0.0
    grow_cut: float = 0.5

    def __post_init__(self) -> None:
        if not np.isfinite(self.min_volume_mm3) or self.min_volume_mm3 < 0:
            raise ValueError(f"min_volume_mm3={self.min_volume_mm3}: must be a volume ≥ 0 mm³")
        if not 0 <= self.max_outside <= 1:
            raise ValueError(f"max_outside={self.max_outside}: must be a share within [0, 1]")
        if not np.isfinite(self.grow_mm) or self.grow_mm < 0:
            raise ValueError(f"grow_mm={self.grow_mm}: must be a distance ≥ 0 mm (0: no growth)")
        if not 0 < self.grow_cut < 1:
            raise ValueError(f"grow_cut={self.grow_cut}: must lie strictly within (0, 1)")

    @property
    def changes_nothing(self) -> bool:
        return (
            self.min_volume_mm3 == 0
            and not self.fill_holes
            and self.max_outside == 1
            and self.grow_mm == 0
        )


def outside_shares(
    ids: np.ndarray, n: int, labels: np.ndarray, spacing: Sequence[float]
) -> np.ndarray:
    """Per component of ``ids`` (labelled 1..n, same shape as ``labels``): the share of its
    surface — faces to voxels outside it, each weighted by its area in mm² from ``spacing``
    (3,), so thick slices do not inflate the caps — that borders background in ``labels``
    (index 0 unused; 0 for a component without neighbours)."""
    shares = np.zeros(n + 1)
    sp = np.asarray(spacing, np.float64)
    for k, found in enumerate(ndimage.find_objects(ids), start=1):
        if found is None:
            continue
        box = tuple(
            slice(max(s.start - 1, 0), min(s.stop + 1, size))
            for s, size in zip(found, ids.shape, strict=True)
        )
        inside, around = ids[box] == k, labels[box]
        total = outside = 0.0
        for axis in range(3):
            area = float(np.prod(np.delete(sp, axis)))
            low, high = [slice(None)] * 3, [slice(None)] * 3
            low[axis], high[axis] = slice(None, -1), slice(1, None)
            low, high = tuple(low), tuple(high)
            for here, there in ((low, high), (high, low)):  # faces toward +axis, then -axis
                faces = inside[here] & ~inside[there]
                total += area * np.count_nonzero(faces)
                outside += area * np.count_nonzero(faces & (around[there] == 0))
        if total:
            shares[k] = outside / total
    return shares


def clean_lesions(
    labels: np.ndarray,
    spacing: Sequence[float],
    rule: LesionRule,
    hu: np.ndarray | None = None,
) -> np.ndarray:
    """``labels`` (X, Y, Z) uint8 LiTS labels with ``rule`` applied; ``spacing`` (3,) mm;
    ``hu`` (X, Y, Z), the volume segmented, needed when the rule grows lesions.
    A component removed as outside goes whole (with its filled cavities when ``fill_holes``;
    without, liver voxels it encloses stay liver)."""
    if rule.grow_mm > 0 and hu is None:
        raise ValueError("a lesion rule with grow_mm > 0 needs the HU volume (hu=…)")
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
        outside = outside_shares(ids, n, region, spacing) > rule.max_outside
        keep &= ~outside
    keep[0] = outside[0] = False
    region[(region == TUMOUR) & ~keep[ids]] = LIVER
    region[keep[ids]] = TUMOUR  # filled holes lie inside tumour, so inside the liver
    region[outside[ids]] = 0  # after: a filled outside component goes whole
    if rule.grow_mm > 0:
        out = grow_lesions(out, hu, spacing, rule.grow_mm, rule.grow_cut)
    return out
