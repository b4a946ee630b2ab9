"""Post-processing of predicted label volumes (numpy in, numpy out)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from livseg.data import bounding_box
from livseg.inference.lesions import LesionRule, clean_lesions

MIN_COMPONENT_FRACTION = 0.1  # liver components smaller than this × the largest are dropped
# A cascade's stage-2 components with less than this share of their voxels in stage 1's liver are
# dropped (``keep_confirmed_components``). Measured on generated cases: stage 2's liver
# components held 0.88-0.93 of their voxels in stage 1's liver, its false organs 0.00.
MIN_CONFIRMED_SHARE = 0.1


def _liver_components(labels: np.ndarray) -> tuple[tuple[slice, ...], np.ndarray, int] | None:
    """The liver's box (label ≥ 1) and its 26-connected component ids inside it, their count;
    None without liver. Labelled only inside the box: a fraction of a 512² × Z volume."""
    liver = labels >= 1
    if not liver.any():
        return None
    box = bounding_box(liver)
    comp, n = ndimage.label(liver[box], structure=np.ones((3, 3, 3), bool))
    return box, comp, n


def _keep_only(
    labels: np.ndarray, box: tuple[slice, ...], comp: np.ndarray, keep: np.ndarray
) -> np.ndarray:
    """``labels`` with the components ``comp`` (ids inside ``box``) not in ``keep`` (a bool per
    id; index 0, the box's background, stays background either way); ``labels`` itself when
    every one is kept."""
    if keep[1:].all():
        return labels
    out = labels.copy()
    out[box] = np.where(keep[comp], labels[box], 0)
    return out


def keep_liver_components(
    labels: np.ndarray, fraction: float = MIN_COMPONENT_FRACTION
) -> np.ndarray:
    """Drop liver components (label ≥ 1, 26-connected) below ``fraction`` of the largest and
    tumour outside what is kept. (X, Y, Z) uint8 in and out."""
    found = _liver_components(labels)
    if found is None or found[2] <= 1:
        return labels
    box, comp, n = found
    sizes = np.bincount(comp.ravel())[1:]
    keep = np.zeros(n + 1, bool)
    keep[1:] = sizes >= fraction * sizes.max()
    return _keep_only(labels, box, comp, keep)


def keep_confirmed_components(
    labels: np.ndarray, confirm: np.ndarray, share: float = MIN_CONFIRMED_SHARE
) -> np.ndarray:
    """``labels`` (X, Y, Z) uint8 without the liver components (label ≥ 1, 26-connected, tumour
    included) that hold less than ``share`` of their voxels in ``confirm`` (X, Y, Z) bool.

    A cascade's stage 2 sees only the liver box, windows of it in training: a separate organ of
    liver-like HU in the box (spleen, heart) can look like liver there, while stage 1 saw the
    whole slice and left it out. Stage 1 says which components are liver, stage 2 where their
    borders run: stage 1 is too coarse for the borders themselves. Not caught: an organ
    touching the liver (one component); the cost: a liver piece stage 1 missed entirely."""
    if not 0 <= share <= 1:
        raise ValueError(f"share={share}: must be within [0, 1]")
    if confirm.shape != labels.shape or confirm.dtype != bool:
        raise ValueError(
            f"confirm {confirm.dtype} {confirm.shape}: expected a bool mask of the labels' shape "
            f"{labels.shape} (e.g. stage 1's labels >= 1)"
        )
    found = _liver_components(labels)
    if share == 0 or found is None:
        return labels
    box, comp, n = found
    sizes = np.bincount(comp.ravel(), minlength=n + 1)
    inside = np.bincount(comp.ravel(), weights=confirm[box].ravel(), minlength=n + 1)
    return _keep_only(labels, box, comp, inside >= share * sizes)


def postprocess_labels(
    labels: np.ndarray,
    spacing: tuple[float, float, float] | None,
    rule: LesionRule,
    hu: np.ndarray | None = None,
) -> np.ndarray:
    """The Segmenter's (and the Cascade's) post-processing of (X, Y, Z) labels: liver
    components, then, given the voxel spacing in mm, the lesion rule (its growth follows the
    segmented volume's ``hu``, same shape)."""
    labels = keep_liver_components(labels)
    return labels if spacing is None else clean_lesions(labels, spacing, rule, hu)
