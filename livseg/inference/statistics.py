"""Per-study statistics from a predicted mask, in patient coordinates (numpy in, dict out).

Volumes from the affine's voxel volume; tumours are 26-connected components of label 2;
diameters are RECIST-style: the longest in-plane extent of a tumour on any axial slice,
measured between pixel corners (a 10 mm disc measures ≈ 10 mm, not one pixel less).
Bounding boxes are in RAS mm (NIfTI world coordinates; DICOM's LPS flips x and y).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import pdist

from livseg.data import LIVER, TUMOUR

_CONNECTIVITY = np.ones((3, 3, 3), bool)
_CORNERS = np.array([[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]])


def longest_axial_diameter(component: np.ndarray, affine: np.ndarray) -> float:
    """Largest in-plane distance (mm) across the pixels of a (X, Y, Z) boolean mask on any
    axial slice (``array[:, :, k]``) of a canonical volume with voxel → mm ``affine``."""
    best = 0.0
    plane = affine[:3, :2]  # mm per step along x and y: oblique grids measure correctly
    for k in np.flatnonzero(component.any(axis=(0, 1))):
        pixels = np.argwhere(component[:, :, k]).astype(np.float64)
        points = (pixels[:, None, :] + _CORNERS[None]).reshape(-1, 2)
        if len(pixels) > 2:
            try:
                points = points[ConvexHull(points).vertices]
            except QhullError:  # all corners on one line: measure them all
                pass
        best = max(best, float(pdist(points @ plane.T).max()))
    return best


def box_mm(box: tuple[slice, ...], affine: np.ndarray) -> list[float]:
    """[x0, y0, z0, x1, y1, z1] RAS mm spanned by the outer faces of the voxels in ``box``."""
    corners = np.array(
        [[a, b, c, 1.0] for a in (box[0].start - 0.5, box[0].stop - 0.5)
         for b in (box[1].start - 0.5, box[1].stop - 0.5)
         for c in (box[2].start - 0.5, box[2].stop - 0.5)]
    )  # fmt: skip
    mm = (corners @ affine.T)[:, :3]
    return [round(float(v), 2) for v in (*mm.min(0), *mm.max(0))]


def study_statistics(labels: np.ndarray, affine: np.ndarray) -> dict:
    """Liver and tumour figures of a canonical (X, Y, Z) LiTS mask (0/1/2) with voxel → RAS mm
    ``affine`` (4, 4). Tumours are listed largest first."""
    voxel_ml = abs(float(np.linalg.det(affine[:3, :3]))) / 1000.0
    liver_voxels = int(np.count_nonzero(labels >= LIVER))
    tumour = labels == TUMOUR
    components, count = ndimage.label(tumour, structure=_CONNECTIVITY)
    tumours = []
    for index, box in enumerate(ndimage.find_objects(components), start=1):
        if box is None:
            continue
        part = components[box] == index
        offset = np.eye(4)
        offset[:3, 3] = [s.start for s in box]
        diameter = longest_axial_diameter(part, affine @ offset)
        tumours.append(
            {
                "volume_ml": round(int(part.sum()) * voxel_ml, 3),
                "longest_axial_diameter_mm": round(diameter, 1),
                "bbox_mm": box_mm(box, affine),
            }
        )
    tumours.sort(key=lambda t: -t["volume_ml"])
    liver_ml = liver_voxels * voxel_ml
    tumour_ml = int(tumour.sum()) * voxel_ml
    return {
        "frame": "RAS",  # bounding boxes: x to the patient's left is negative (DICOM LPS: +)
        "liver_ml": round(liver_ml, 1),
        "tumour_count": count,
        "tumour_ml": round(tumour_ml, 2),
        "tumour_burden_pct": round(100.0 * tumour_ml / liver_ml, 2) if liver_ml else 0.0,
        "largest_tumour_diameter_mm": tumours[0]["longest_axial_diameter_mm"] if tumours else 0.0,
        "tumours": tumours,
    }
