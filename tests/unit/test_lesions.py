"""Lesion post-processing: small tumour specks become liver, enclosed cavities become tumour,
components mostly outside the liver become background."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from livseg.inference import LesionRule, clean_lesions


def _liver_with_lesions() -> np.ndarray:
    labels = np.zeros((40, 40, 20), np.uint8)
    labels[2:38, 2:38, 2:18] = 1
    labels[5:15, 5:15, 5:15] = 2  # a 10×10×10 lesion with a 4×4×4 necrotic core labelled liver
    labels[8:12, 8:12, 8:12] = 1
    labels[30, 30, 10] = 2  # a one-voxel speck
    labels[25:27, 25:27, 10] = 2  # a 2×2×1 speck
    return labels


def test_default_rule_changes_nothing():
    labels = _liver_with_lesions()
    assert clean_lesions(labels, (1.0, 1.0, 1.0), LesionRule()) is labels


def test_small_components_become_liver_by_physical_volume():
    labels = _liver_with_lesions()
    out = clean_lesions(labels, (1.0, 1.0, 2.0), LesionRule(min_volume_mm3=5.0))
    assert out[30, 30, 10] == 1  # 2 mm³: dropped
    assert (out[25:27, 25:27, 10] == 2).all()  # 8 mm³: kept
    assert (out[5:15, 5:15, 5:15] >= 1).all() and out[6, 6, 6] == 2
    assert out[8:12, 8:12, 8:12].max() == 1  # holes not filled by this rule
    assert (out[labels == 0] == 0).all()  # nothing outside the liver changes
    coarse = clean_lesions(labels, (2.0, 2.0, 2.0), LesionRule(min_volume_mm3=5.0))
    assert coarse[30, 30, 10] == 2  # the same speck is 8 mm³ at 2 mm voxels


def test_holes_enclosed_by_tumour_are_filled():
    labels = _liver_with_lesions()
    out = clean_lesions(labels, (1.0, 1.0, 1.0), LesionRule(fill_holes=True))
    assert (out[5:15, 5:15, 5:15] == 2).all()
    assert out[30, 30, 10] == 2 and out[20, 20, 3] == 1


def test_components_mostly_outside_the_liver_become_background():
    """A lesion inside the liver (border all liver), one at its surface (a fifth of its border
    outside) and a blob on the liver's outside (most of its border outside): only the blob goes,
    to background, and its border share is what the rule compares."""
    from livseg.inference.lesions import FACES, outside_shares

    labels = np.zeros((40, 40, 20), np.uint8)
    labels[2:30, 2:38, 2:18] = 1
    labels[5:15, 5:15, 5:15] = 2  # inside
    labels[24:30, 20:26, 6:12] = 2  # at the surface: one face of six on background
    labels[30:36, 5:11, 6:12] = 2  # outside, touching the liver with one face
    ids, n = ndimage.label(labels == 2, FACES)
    shares = outside_shares(ids, n, labels, (1.0, 1.0, 1.0))
    by_place = {
        place: shares[ids[at]]
        for place, at in (
            ("inside", (10, 10, 10)),
            ("surface", (27, 22, 8)),
            ("outside", (33, 8, 8)),
        )
    }
    assert by_place["inside"] == 0.0
    assert by_place["surface"] == pytest.approx(1 / 6)  # 36 of 216 border voxels (6 faces of 6²)
    assert by_place["outside"] == pytest.approx(5 / 6)
    # By area: with 5 mm slices the surface cube's outer face (an x face, 1 × 5 mm² each) is
    # 180 of its 792 mm² (x and y faces 5 mm², z faces 1 mm²), not a sixth.
    thick = outside_shares(ids, n, labels, (1.0, 1.0, 5.0))
    assert thick[ids[27, 22, 8]] == pytest.approx(180 / 792)
    out = clean_lesions(labels, (1.0, 1.0, 1.0), LesionRule(max_outside=0.5))
    assert (out[30:36, 5:11, 6:12] == 0).all()
    assert (out[5:15, 5:15, 5:15] == 2).all() and (out[24:30, 20:26, 6:12] == 2).all()
    assert np.array_equal(out[labels != 2], labels[labels != 2])
    assert np.array_equal(
        clean_lesions(labels, (1.0, 1.0, 1.0), LesionRule(max_outside=0.9)), labels
    )
    # With a minimum volume both 216-voxel components are small: the surface one becomes
    # liver, the outside one still background (never liver).
    both = clean_lesions(labels, (1.0, 1.0, 1.0), LesionRule(250.0, max_outside=0.5))
    assert (both[24:30, 20:26, 6:12] == 1).all() and (both[30:36, 5:11, 6:12] == 0).all()


def test_bad_rules_are_refused():
    with pytest.raises(ValueError, match="min_volume_mm3"):
        LesionRule(min_volume_mm3=-1)
    with pytest.raises(ValueError, match="max_outside"):
        LesionRule(max_outside=1.5)


def test_rule_table_prefers_removing_specks_when_no_lesion_is_to_be_found():
    """Validation without reference tumour: a rule that leaves nothing scores detection F1 1
    (nothing to find, nothing found), so it beats one that keeps false-positive specks."""
    from livseg.evaluate.lesion_choice import rule_table

    rules = (LesionRule(), LesionRule(min_volume_mm3=65.0))
    no_tumour = [
        {"dice": None, "tp": 0, "fp": 2, "fn": 0},
        {"dice": None, "tp": 0, "fp": 0, "fn": 0},
    ]
    table = rule_table([no_tumour], rules)
    assert [row["lesion_f1"] for row in table] == [0.0, 1.0]
    assert [row["objective"] for row in table] == [0.0, 1.0]
    assert np.isnan(table[0]["tumour_dice"])
    # With a reference lesion, losing it is F1 0 whatever else is dropped; Dice averages only
    # the cases with reference tumour.
    tumour = [{"dice": 0.0, "tp": 0, "fp": 0, "fn": 1}, {"dice": 0.0, "tp": 0, "fp": 0, "fn": 1}]
    table = rule_table([no_tumour, tumour], rules)
    assert [row["lesion_f1"] for row in table] == [0.0, 0.0]
    assert [row["fp"] for row in table] == [2, 0] and table[1]["tumour_dice"] == 0.0
