"""HU-guided growth of predicted lesions into their margin (numpy in, numpy out).

A tumour stage trained on slices labels the darkest part of a low-contrast or rimmed lesion
and calls its paler margin liver: on generated cases the voxels it labelled tumour were 40-60 HU
below the liver, the lesion voxels it left as liver 15-30 HU below, and these under-segmented
lesions (found, but IoU ≤ 0.5) were most of the missed detections. ``grow_lesions`` lets each
tumour component take the liver voxels within ``grow_mm`` of it (Euclidean, in mm) that connect
to it through such voxels and whose HU lies on the lesion's side of a cut between the lesion's
median HU and the surrounding liver's: ``cut`` 0.5 is the midpoint, larger values reach further
toward the liver's HU. Hypodense and hyperdense lesions alike; a component within
``MIN_CONTRAST_HU`` of its liver does not grow (no contrast to follow).

The HU compared is smoothed against voxel noise (σ 10-27 HU in the generated kernels) over the
liver's inner voxels only (a normalised Gaussian, ``SMOOTH_MM``): neither the lesion's own
voxels nor fat and air outside the liver darken the liver next to them, and the liver's outer
voxel layer (partial volume with its surroundings) is never grown into, so a lesion segmented
to its edge, or one at the liver's surface, does not creep outward. The liver's HU is the median
of the inner liver around each component beyond the reach (its box grown by the reach and the
smoothing's support), so a fatty or unevenly enhancing liver is judged locally and the margin
in question does not pull it. Only liver becomes tumour: the liver's outline, what the liver
Dice scores, never changes. Smoothing, distances and growth run in boxes around the lesions
(two passes over the whole volume find them). Vessels of lesion-like HU next to a lesion (dark
ones on a non-contrast scan, bright ones beside a hyper-enhancing lesion) are followed up to
``grow_mm``. A region-growing refinement as several LiTS pipelines use; whether and how far to
grow is chosen on validation with the rest of the lesion rule
(``livseg.evaluate.choose_lesion_rule``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from livseg.data import LIVER, TUMOUR, bounding_box

# Face connectivity: a lesion's components as the LiTS detection rule counts them.
FACES = ndimage.generate_binary_structure(3, 1)
SMOOTH_MM = 1.5  # Gaussian σ of the HU the cut compares (3 mm did worse in a prototype)
MIN_CONTRAST_HU = 10.0  # a lesion's median this close to its liver's: nothing to follow
MIN_LIVER_VOXELS = 20  # fewer reference liver voxels around a component: no growth


def _smooth_over(values: np.ndarray, mask: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Gaussian mean of ``values`` over the voxels of ``mask`` only (normalised convolution),
    float32 of the same shape; 0 where no mask voxel is near."""
    weight = ndimage.gaussian_filter(mask.astype(np.float32), sigma)
    total = ndimage.gaussian_filter(np.where(mask, values, 0).astype(np.float32), sigma)
    return np.divide(total, weight, out=np.zeros_like(total), where=weight > 1e-3)


def _eroded_foreground(labels: np.ndarray, box: tuple[slice, ...]) -> np.ndarray:
    """Liver or tumour voxels of ``labels[box]`` whose six face neighbours are too (the
    volume's own faces count as foreground: a liver cut by the scan has no surface there)."""
    grown = tuple(
        slice(max(b.start - 1, 0), min(b.stop + 1, n))
        for b, n in zip(box, labels.shape, strict=True)
    )
    inside = ndimage.binary_erosion(labels[grown] >= LIVER, FACES, border_value=1)
    back = tuple(
        slice(b.start - g.start, b.stop - g.start) for b, g in zip(box, grown, strict=True)
    )
    return inside[back]


def grow_lesions(
    labels: np.ndarray,
    hu: np.ndarray,
    spacing: Sequence[float],
    grow_mm: float,
    cut: float = 0.5,
) -> np.ndarray:
    """``labels`` (X, Y, Z) uint8 LiTS labels with each tumour component grown into adjacent
    liver up to ``grow_mm`` (mm) where the liver-smoothed ``hu`` (X, Y, Z) lies on the
    lesion's side of ``lesion + cut × (liver − lesion)`` (medians of the raw HU);
    ``spacing`` (3,) mm. A copy when anything grows, ``labels`` itself otherwise."""
    if hu.shape != labels.shape:
        raise ValueError(f"HU volume {hu.shape} and labels {labels.shape} differ in shape")
    if not 0 < cut < 1:
        raise ValueError(f"cut={cut}: must lie strictly between 0 (the lesion) and 1 (the liver)")
    if not np.isfinite(grow_mm) or grow_mm < 0:
        raise ValueError(f"grow_mm={grow_mm}: must be a distance ≥ 0 mm (0: no growth)")
    sp = np.asarray(spacing, np.float64)
    if sp.shape != (3,) or not (np.isfinite(sp).all() and (sp > 0).all()):
        raise ValueError(f"spacing={spacing}: expected three voxel sizes > 0 mm")
    tumour = labels == TUMOUR
    found = bounding_box(tumour)
    if grow_mm == 0 or found is None:
        return labels
    sigma = SMOOTH_MM / sp
    reach = np.ceil(grow_mm / sp).astype(int)  # voxels a growth can go, per axis
    pad = reach + np.ceil(4 * sigma).astype(int)  # plus the smoothing's support
    ids, _ = ndimage.label(tumour[found], FACES)  # labelled in the tumour's box only
    out = labels
    for k, own_box in enumerate(ndimage.find_objects(ids), start=1):
        if own_box is None:
            continue
        box = tuple(
            slice(max(f.start + s.start - p, 0), min(f.start + s.stop + p, size))
            for f, s, p, size in zip(found, own_box, pad, labels.shape, strict=True)
        )
        own = np.zeros(out[box].shape, bool)  # the component, in ``box``'s coordinates
        within = tuple(
            slice(f.start + s.start - b.start, f.start + s.stop - b.start)
            for f, s, b in zip(found, own_box, box, strict=True)
        )
        own[within] = ids[own_box] == k
        region, values = out[box], hu[box]
        # The liver's outer layer (next to fat, air or another organ) reads darker by partial
        # volume: a lesion at the surface would follow it. Neither grown into nor averaged.
        inner = (region == LIVER) & _eroded_foreground(out, box)
        near = ndimage.distance_transform_edt(~own, sampling=sp) <= grow_mm
        reference = inner & ~near  # the liver beyond the reach, not the margin in question
        if np.count_nonzero(reference) < MIN_LIVER_VOXELS:
            continue
        lesion_hu = float(np.median(values[own]))
        liver_hu = float(np.median(values[reference]))
        if abs(lesion_hu - liver_hu) < MIN_CONTRAST_HU:
            continue
        threshold = lesion_hu + cut * (liver_hu - lesion_hu)
        smooth = _smooth_over(values, inner, sigma)
        like = (smooth - threshold) * np.sign(lesion_hu - liver_hu) > 0  # the lesion's side
        allowed = own | (like & near & inner)
        grown = ndimage.binary_propagation(own, structure=FACES, mask=allowed) & ~own
        if grown.any():
            if out is labels:
                out = labels.copy()
            out[box][grown] = TUMOUR
    return out
