"""Per-study statistics and the review flag, checked against independent computations."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from livseg.inference.qa import ReviewLimits, cut_faces, pass_agreement, review
from livseg.inference.statistics import study_statistics


def _brute_diameter(pixels: np.ndarray, spacing: tuple[float, float]) -> float:
    """Largest distance between any two corners of the given (i, j) pixels, in mm."""
    corners = [(i + di, j + dj) for i, j in pixels for di in (-0.5, 0.5) for dj in (-0.5, 0.5)]
    pts = np.array(corners) * np.array(spacing)
    return max(np.hypot(*(a - b)) for a, b in itertools.combinations(pts, 2))


@pytest.fixture()
def study():
    """A liver with two tumours on a 0.8 × 0.7 × 2.5 mm grid, origin (-100, -80, 30) mm."""
    labels = np.zeros((60, 50, 20), np.uint8)
    labels[5:55, 5:45, 2:18] = 1
    labels[10:20, 10:14, 5:8] = 2  # 10 × 4 pixels on 3 slices
    yy, xx = np.mgrid[0:60, 0:50]
    disc = (yy - 40) ** 2 + (xx - 30) ** 2 <= 36  # radius 6 pixels
    labels[:, :, 10][disc] = 2
    labels[:, :, 11][disc] = 2
    affine = np.diag([0.8, 0.7, 2.5, 1.0])
    affine[:3, 3] = [-100, -80, 30]
    return labels, affine


def test_statistics_match_an_independent_computation(study):
    labels, affine = study
    stats = study_statistics(labels, affine)
    voxel_ml = 0.8 * 0.7 * 2.5 / 1000
    assert stats["liver_ml"] == pytest.approx((labels >= 1).sum() * voxel_ml, abs=0.1)
    assert stats["tumour_count"] == 2
    yy, xx = np.mgrid[0:60, 0:50]
    small, disc = 10 * 4 * 3, 2 * int(((yy - 40) ** 2 + (xx - 30) ** 2 <= 36).sum())
    assert stats["tumour_ml"] == pytest.approx((small + disc) * voxel_ml, abs=0.01)
    assert stats["tumour_burden_pct"] == pytest.approx(
        100 * (small + disc) / (labels >= 1).sum(), abs=0.01
    )
    largest, second = stats["tumours"]  # largest first
    assert largest["volume_ml"] == pytest.approx(max(small, disc) * voxel_ml, abs=1e-3)
    rect = np.argwhere(np.ones((10, 4), bool))
    assert second["longest_axial_diameter_mm"] == pytest.approx(
        _brute_diameter(rect, (0.8, 0.7)), abs=0.06
    )
    # the box spans the outer voxel faces: x 10..20 → -100 + 0.8 * [9.5, 19.5]
    assert second["bbox_mm"] == pytest.approx(
        [-100 + 0.8 * 9.5, -80 + 0.7 * 9.5, 30 + 2.5 * 4.5,
         -100 + 0.8 * 19.5, -80 + 0.7 * 13.5, 30 + 2.5 * 7.5], abs=0.01
    )  # fmt: skip
    assert stats["largest_tumour_diameter_mm"] == largest["longest_axial_diameter_mm"]


def test_diameter_follows_the_affine_not_the_voxel_order(study):
    """The same tumour with x and y swapped and a rotated affine measures the same."""
    labels, affine = study
    swapped = np.ascontiguousarray(labels.transpose(1, 0, 2))
    rot = affine.copy()
    rot[:3, :3] = affine[:3, :3][:, [1, 0, 2]]
    a = study_statistics(labels, affine)
    b = study_statistics(swapped, rot)
    assert a["largest_tumour_diameter_mm"] == pytest.approx(b["largest_tumour_diameter_mm"])
    assert a["liver_ml"] == pytest.approx(b["liver_ml"])


def test_an_empty_mask_has_zero_figures():
    stats = study_statistics(np.zeros((8, 8, 4), np.uint8), np.eye(4))
    assert stats["liver_ml"] == 0 and stats["tumour_count"] == 0 and stats["tumours"] == []


def test_review_reasons(study):
    labels, affine = study
    stats = study_statistics(labels, affine)
    limits = ReviewLimits(liver_ml=(10, 4000))
    clean = review(labels, stats, 0.97, 0.98, limits)
    assert clean == {"confidence": 0.97, "min_certainty": 0.94, "agreement": 0.98,
                     "review": False, "reasons": []}  # fmt: skip
    unsure = review(labels, stats, 0.80, None, limits)
    assert unsure["review"] and "low confidence" in unsure["reasons"][0]
    shaky = review(labels, stats, 0.97, 0.5, limits)
    assert shaky["review"] and "unstable" in shaky["reasons"][0]
    small = review(labels, stats, 0.97, 0.98, ReviewLimits(liver_ml=(500, 4000)))
    assert "outside 500–4000 mL" in small["reasons"][0]
    cut = labels[:, :, 8:]  # the volume starts inside the liver
    reasons = review(cut, study_statistics(cut, affine), 0.97, 0.98, limits)
    assert reasons["review"] and "inferior" in reasons["reasons"][0]
    none = np.zeros_like(labels)
    assert review(none, study_statistics(none, affine), None, 1.0, ReviewLimits())["reasons"] == [
        "no liver found"
    ]


def test_cut_faces_ignore_a_liver_that_only_grazes_an_edge(study):
    labels, _ = study
    grazing = labels.copy()
    grazing[30, 20, 0:3] = 1  # one voxel column reaching the inferior face
    assert cut_faces(grazing, 0.2) == []
    assert cut_faces(labels[:, :, 5:], 0.2) == ["inferior"]


def test_pass_agreement():
    a = np.zeros((4, 4, 4), np.uint8)
    a[:2] = 1
    assert pass_agreement(a, a) == 1.0
    assert pass_agreement(a, np.zeros_like(a)) == 0.0
    b = a.copy()
    b[0, 0, :] = 2  # 4 of 32 liver voxels labelled tumour by the other pass
    assert pass_agreement(a, b) == pytest.approx(28 / 32)
    assert pass_agreement(np.zeros_like(a), np.zeros_like(a)) == 1.0


def test_both_qa_passes_get_the_lesion_rule():
    """The shifted QA pass is post-processed as the first (its spacing, so the lesion rule):
    otherwise the rule's own changes (specks dropped, lesions grown) would read as the model
    disagreeing with itself."""
    from livseg.inference import Segmentation, analyse_study
    from livseg.io import Volume

    class Recorder:
        min_certainty = None

        def __init__(self):
            self.spacings = []

        def segment(self, hu, *, spacing=None, **_):
            self.spacings.append(spacing)
            return Segmentation(np.zeros(hu.shape, np.uint8), None, None)

    affine = np.diag([0.8, 0.7, 2.5, 1.0])
    volume = Volume(np.zeros((30, 20, 8), np.float32), affine, (30, 20, 8), affine, "study")
    recorder = Recorder()
    result = analyse_study(recorder, volume)
    assert recorder.spacings == [volume.spacing, volume.spacing]
    assert result.report["qa"]["agreement"] == 1.0
