"""Lesion post-processing: small tumour specks become liver, enclosed cavities become tumour."""

from __future__ import annotations

import numpy as np
import pytest

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


def test_bad_rules_are_refused():
    with pytest.raises(ValueError, match="min_volume_mm3"):
        LesionRule(min_volume_mm3=-1)


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
