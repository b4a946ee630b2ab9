"""What is published about LiTS-like CT, as ranges, and the same facts measured on generated cases.

The ranges are literature values (full texts are not reachable from air-gapped machines, so each
entry names its source; treat them as approximate):

- spacing: LiTS (Bilic et al., Medical Image Analysis 84, 2023) reports in-plane resolution of
  about 0.55–1.0 mm and slice spacing of 0.45–6.0 mm;
- liver HU: enhanced portal-venous liver parenchyma is about 100–130 HU in routine abdominal CT
  (most LiTS volumes are portal-venous); a fatty liver and the arterial phase are darker;
- tumours: LiTS lesions are mostly hypodense (some hyperdense), 0 to 75 per volume, from a few
  millimetres to more than 10 cm, with many small ones; a minority of volumes has no tumour.
"""

from __future__ import annotations

import numpy as np

# name: (low, high) that the generated set must fall into.
LITS_REFERENCE: dict[str, tuple[float, float]] = {
    "in_plane_mm_min": (0.5, 0.8),  # at the 512 matrix the generator's sizes are scaled from
    "in_plane_mm_max": (0.8, 1.05),
    "slice_mm_min": (0.45, 1.5),
    "slice_mm_max": (3.0, 6.0),
    "portal_liver_hu": (95.0, 135.0),  # mean over portal-venous cases
    "non_portal_liver_hu": (55.0, 100.0),  # arterial and fatty cases
    "tumour_contrast_hu": (15.0, 60.0),  # median liver minus tumour HU per case with tumour
    "hypodense_share": (0.7, 1.0),
    "lesion_diameter_median_mm": (8.0, 25.0),
    "lesion_diameter_max_mm": (50.0, 120.0),
    "small_lesion_share": (0.15, 0.6),  # diameter < 10 mm
    "tumour_free_share": (0.05, 0.35),
    "tumour_burden_median_pct": (0.3, 15.0),  # tumour / (liver + tumour) volume, cases with tumour
}


def measured_statistics(cases: list) -> dict[str, float]:
    """The ``LITS_REFERENCE`` facts measured on generated cases (``SyntheticCase``): HU on the
    arrays, sizes from the drawn lesions; in-plane spacing scaled to the 512 matrix."""
    scale = [c.truth["size"] / 512 for c in cases]
    in_plane = [c.spacing[0] * s for c, s in zip(cases, scale, strict=True)]
    slices = [c.spacing[2] for c in cases]
    portal = [c.ct[c.labels == 1].mean() for c in cases if c.truth["phase"] == "portal"]
    other = [c.ct[c.labels == 1].mean() for c in cases if c.truth["phase"] != "portal"]
    contrast, burden = [], []
    for c in cases:
        tumour = c.labels == 2
        if tumour.sum() >= 20:
            contrast.append(c.ct[c.labels == 1].mean() - c.ct[tumour].mean())
            burden.append(100 * tumour.sum() / (c.labels > 0).sum())
    lesions = [t for c in cases for t in c.truth["tumours"] if t["voxels"] > 0]  # visible ones
    diameters = np.array([t["diameter_mm"] for t in lesions])
    return {
        "in_plane_mm_min": min(in_plane),
        "in_plane_mm_max": max(in_plane),
        "slice_mm_min": min(slices),
        "slice_mm_max": max(slices),
        "portal_liver_hu": float(np.mean(portal)) if portal else np.nan,
        "non_portal_liver_hu": float(np.mean(other)) if other else np.nan,
        "tumour_contrast_hu": float(np.median(contrast)) if contrast else np.nan,
        "hypodense_share": float(np.mean([t["contrast_hu"] > 0 for t in lesions])),
        "lesion_diameter_median_mm": float(np.median(diameters)),
        "lesion_diameter_max_mm": float(diameters.max()),
        "small_lesion_share": float(np.mean(diameters < 10)),
        "tumour_free_share": float(np.mean([not c.truth["tumours"] for c in cases])),
        "tumour_burden_median_pct": float(np.median(burden)) if burden else np.nan,
    }
