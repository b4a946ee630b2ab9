"""Post-processing of predicted label volumes (numpy in, numpy out)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from livseg.data import bounding_box
from livseg.inference.lesions import LesionRule, clean_lesions

MIN_COMPONENT_FRACTION = 0.1  # liver components smaller than this × the largest are dropped


def keep_liver_components(
    labels: np.ndarray, fraction: float = MIN_COMPONENT_FRACTION
) -> np.ndarray:
    """Drop liver components (label ≥ 1, 26-connected) below ``fraction`` of the largest and
    tumour outside what is kept. (X, Y, Z) uint8 in and out."""
    liver = labels >= 1
    if not liver.any():
        return labels
    box = bounding_box(liver)  # label only inside the liver's box: a fraction of a 512² × Z volume
    comp, n = ndimage.label(liver[box], structure=np.ones((3, 3, 3), bool))
    if n <= 1:
        return labels
    sizes = np.bincount(comp.ravel())[1:]
    keep = np.zeros(n + 1, bool)
    keep[1:] = sizes >= fraction * sizes.max()
    out = labels.copy()
    out[box] = np.where(keep[comp], labels[box], 0)
    return out


def postprocess_labels(
    labels: np.ndarray, spacing: tuple[float, float, float] | None, rule: LesionRule
) -> np.ndarray:
    """The Segmenter's (and the Cascade's) post-processing of (X, Y, Z) labels: liver
    components, then, given the voxel spacing in mm, the lesion rule."""
    labels = keep_liver_components(labels)
    return labels if spacing is None else clean_lesions(labels, spacing, rule)
