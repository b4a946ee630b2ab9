"""Synthetic LiTS-like abdominal CT in Hounsfield units with liver (1) and tumour (2) labels.

Drawn in world mm on a canonical RAS+ grid (nibabel: x toward patient Right, y Anterior, z
Superior), then stored in a per-case file orientation, so readers must honour the affine. Tumours
follow Hu et al., CVPR 2023 ("Label-free liver tumor segmentation"): deformed, textured ellipsoids,
darker than the liver, with blurred edges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, ornt_transform

from livseg.errors import UsageError
from livseg.synthetic.anatomy import draw_anatomy, draw_detail
from livseg.synthetic.paint import add_noise, paint_body, paint_liver, paint_organ, paint_skeleton
from livseg.synthetic.shapes import HU_RANGE, Grid, SmoothField

FILE_AXCODES = ("RAS", "LAS", "LPS", "RPS", "LPI", "RAI")


@dataclass(frozen=True)
class SyntheticCase:
    """One synthetic CT; ``ct``/``labels`` have shape (X, Y, Z) in the FILE orientation."""

    case_id: int
    ct: np.ndarray
    labels: np.ndarray
    affine: np.ndarray
    spacing: tuple[float, float, float]
    truth: dict


def check_int(name: str, value, lo: int, hi: int | None = None) -> None:
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not ok or value < lo or (hi is not None and value > hi):
        want = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise UsageError(f"{name}={value!r}: expected an integer {want}")


def generate_case(
    case_id: int, seed: int = 0, size: int = 128, *, max_tumours: int = 5
) -> SyntheticCase:
    """Deterministic for (case_id, seed, size); different case_ids give different anatomy.

    Shape: (size, size, Z) in a random file orientation. ``truth`` holds phase (portal,
    arterial, fatty), liver_hu, spleen_hu, kidney_hu, spleen {center_mm, radii_mm}, tumours
    [{center_mm, radii_mm, diameter_mm, contrast_hu (> 0 darker than the liver), surface,
    rim_hu, core_hu, voxels}] (world RAS mm; ``voxels`` = labelled voxels, 0 for a tumour lost
    to coarse sampling), noise_sigma, kernel (soft, sharp), axcodes, seed and size.
    """
    check_int("case_id", case_id, 0)
    check_int("seed", seed, 0)
    check_int("size", size, 32, 1024)
    check_int("max_tumours", max_tumours, 0, 50)
    rng = np.random.default_rng([seed, case_id])  # same draws for every size: similar anatomy
    sp = rng.uniform(0.6, 1.0) * 512 / size
    dz = rng.uniform(0.8, 5.0)  # real CT: thin or thick slices, whatever the in-plane matrix
    fov = sp * size
    an = draw_anatomy(rng, fov)
    draw_detail(an, rng, max_tumours, gap=max(1.5 * sp, dz))
    lo_w, hi_w = an["liver_bot"] - an["liver_slack"], an["liver_top"] + an["liver_slack"]
    need = 2 * dz + 5  # guarantees liver-free slices at both ends
    total = max(rng.uniform(180, 260), hi_w - lo_w + 2 * need)
    z0 = an["zc"] + lo_w - need - rng.uniform(0.3, 0.7) * (total - (hi_w - lo_w) - 2 * need)
    an["bowel"] = SmoothField(rng, (-fov / 2, -fov / 2, z0), (fov / 2, fov / 2, z0 + total), 16.0)
    shape = (size, size, math.ceil(total / dz))
    g = Grid((-fov / 2 + sp / 2, -fov / 2 + sp / 2, z0 + dz / 2), (sp, sp, dz), shape)
    hu, lab = np.empty(shape, np.float32), np.zeros(shape, np.uint8)
    paint_body(an, g, hu)
    for e, tex in zip(an["kidneys"], an["kidney_tex"], strict=True):
        paint_organ(an, g, hu, e, an["kidney_hu"], tex, rim=an["kidney_rim"])
    paint_organ(an, g, hu, an["spleen"], an["spleen_hu"], an["spleen_tex"])
    counts = paint_liver(an, g, hu, lab)
    paint_skeleton(an, g, hu, lab)
    # Reconstruction kernel: a soft one (smooth, low noise) or a sharp one (fine, strong noise).
    kernel = "soft" if rng.random() < 0.5 else "sharp"
    sigma, corr = (rng.uniform(8, 15), rng.uniform(0.7, 1.0)) if kernel == "soft" else (
        rng.uniform(18, 32), rng.uniform(0.3, 0.5))  # fmt: skip
    add_noise(hu, g, sigma, corr, np.random.default_rng([seed, case_id, size]))
    ct = np.clip(np.rint(hu), *HU_RANGE).astype(np.int16)
    axcodes = FILE_AXCODES[int(rng.integers(len(FILE_AXCODES)))]
    t = ornt_transform(axcodes2ornt(("R", "A", "S")), axcodes2ornt(tuple(axcodes)))
    affine = np.diag([sp, sp, dz, 1.0])
    affine[:3, 3] = g.origin
    tumours = [
        {
            "center_mm": list(tm["e"][:3]),
            "radii_mm": list(tm["e"][3:6]),
            "contrast_hu": tm["contrast"],
            "diameter_mm": 2 * float(np.cbrt(np.prod(tm["e"][3:6]))),
            "surface": tm["surface"],
            "rim_hu": tm["rim_hu"],
            "core_hu": tm["core_hu"],
            "voxels": n,
        }
        for tm, n in zip(an["tumours"], counts, strict=True)
    ]
    truth = {
        "phase": an["phase"],
        "liver_hu": an["liver_hu"],
        "spleen_hu": an["spleen_hu"],
        "kidney_hu": an["kidney_hu"],
        "spleen": {"center_mm": list(an["spleen"][:3]), "radii_mm": list(an["spleen"][3:6])},
        "tumours": tumours,
        "noise_sigma": sigma,
        "kernel": kernel,
        "axcodes": axcodes,
        "seed": seed,
        "size": size,
    }
    return SyntheticCase(
        case_id=case_id,
        ct=np.ascontiguousarray(apply_orientation(ct, t)),
        labels=np.ascontiguousarray(apply_orientation(lab, t)),
        affine=affine @ inv_ornt_aff(t, shape),
        spacing=(float(sp), float(sp), float(dz)),
        truth=truth,
    )
