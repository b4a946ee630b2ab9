import math

import numpy as np
import pytest
from scipy import ndimage

from livseg.evaluate import (
    binary_scores,
    confusion_counts,
    detect_lesions,
    global_dice,
    roc_auc_ap,
    score_case,
    summarise,
    surface_distances,
)
from livseg.evaluate.auc import auc_ap_from_histograms
from livseg.evaluate.lits import pixel_scores

SPACING = (0.7, 0.7, 2.5)


def ball(shape, centre, radius):
    grid = np.indices(shape).transpose(1, 2, 3, 0)
    return ((grid - np.asarray(centre)) ** 2).sum(-1) <= radius**2


def blobs(seed, shape=(36, 32, 18), level=0.5):
    """Random smooth masks (noise above ``level`` standard deviations after smoothing): several
    components, some touching the array edge."""
    smooth = ndimage.gaussian_filter(np.random.default_rng(seed).standard_normal(shape), 2)
    return smooth > level * smooth.std()


def test_shifted_spheres_dice_and_hausdorff():
    ref = ball((24, 24, 24), (12, 12, 10), 6)
    pred = np.roll(ref, 2, axis=2)  # two slices up: 2 × 2.5 mm
    s = binary_scores(pred, ref, SPACING)
    inter, n = np.count_nonzero(pred & ref), np.count_nonzero(ref)
    assert s["dice"] == pytest.approx(inter / n)
    assert s["jaccard"] == pytest.approx(inter / (2 * n - inter))
    assert s["voe"] == pytest.approx(1 - s["jaccard"]) and s["rvd"] == 0
    assert s["msd"] == pytest.approx(5.0) and 0 < s["assd"] < s["hd95"] <= 5.0


def test_empty_mask_conventions():
    empty, some = np.zeros((8, 8, 8), bool), ball((8, 8, 8), (4, 4, 4), 2)
    both = binary_scores(empty, empty, SPACING)
    assert both == {"dice": 1, "jaccard": 1, "voe": 0, "rvd": 0, "assd": 0, "msd": 0, "hd95": 0}
    missed = binary_scores(empty, some, SPACING)
    assert (missed["dice"], missed["jaccard"], missed["voe"], missed["rvd"]) == (0, 0, 1, -1)
    assert all(math.isnan(missed[k]) for k in ("assd", "msd", "hd95"))
    assert binary_scores(some, empty, SPACING)["rvd"] == math.inf
    with pytest.raises(ValueError, match="pred mask is empty"):
        surface_distances(empty, some, SPACING)
    row = score_case(np.zeros((6, 6, 6), np.uint8), np.zeros((6, 6, 6), np.uint8), SPACING)
    assert row["liver_dice"] == 1 and row["tumour_hd95"] == 0 and row["tumour_fp"] == 0
    assert math.isnan(row["tumour_f1"]) and math.isnan(row["burden_ref"])


def test_far_false_positive_sets_hausdorff_and_detection():
    ref = np.zeros((20, 20, 30), np.uint8)
    ref[2:18, 2:18, 2:28] = 1
    ref[8:12, 8:12, 4:8] = 2  # tumour box, top face at z = 7
    pred = ref.copy()
    pred[10, 10, 20] = 2  # one voxel 13 slices above the top face
    row = score_case(pred, ref, SPACING)
    assert row["tumour_msd"] == pytest.approx(13 * 2.5)
    assert row["liver_msd"] == 0 and row["liver_dice"] == 1
    assert (row["tumour_tp"], row["tumour_fp"], row["tumour_fn"]) == (1, 1, 0)
    assert row["tumour_precision"] == 0.5 and row["tumour_recall"] == 1


def test_detection_hit_miss_split_and_weak_overlap():
    ref, pred = np.zeros((40, 12, 12), bool), np.zeros((40, 12, 12), bool)
    ref[1:5, 1:5, 1:5] = pred[1:5, 1:5, 2:5] = True  # hit: IoU 3/4
    ref[8:12, 1:5, 1:5] = True  # missed
    ref[15:25, 1:5, 1:5] = True  # split in two by a gap plane: IoU 9/10
    pred[15:19, 1:5, 1:5] = pred[20:25, 1:5, 1:5] = True
    ref[28:34, 1:7, 1:7] = True  # touched by a prediction that mostly lies outside: IoU < 0.5
    pred[33:38, 1:7, 1:7] = True
    pred[1:3, 9:11, 9:11] = True  # touches nothing: the only false positive
    got = detect_lesions(pred, ref)
    assert (got["tp"], got["fp"], got["fn"]) == (2, 1, 2)
    assert got["precision"] == pytest.approx(2 / 3) and got["recall"] == 0.5
    assert got["f1"] == pytest.approx(4 / 7)
    diagonal = np.zeros((3, 3, 3), bool)
    diagonal[0, 0, 0] = diagonal[1, 1, 1] = True  # face connectivity: two lesions
    assert detect_lesions(diagonal, np.zeros_like(diagonal))["fp"] == 2


def test_volumes_and_burden():
    ref = np.zeros((20, 20, 10), np.uint8)
    ref[:10, :10, :] = 1  # 1000 liver voxels
    ref[:5, :4, :] = 2  # 200 of them tumour
    pred = ref.copy()
    pred[:5, :2, :] = 1  # 100 tumour voxels
    row = score_case(pred, ref, (0.5, 0.5, 2.0))  # 0.5 mm³ voxels
    assert row["liver_ml_ref"] == row["liver_ml_pred"] == pytest.approx(0.5)
    assert row["tumour_ml_ref"] == pytest.approx(0.1) and row["tumour_ml_pred"] == 0.05
    assert row["burden_ref"] == 0.2 and row["burden_pred"] == 0.1
    assert row["burden_error"] == pytest.approx(0.1)
    assert (row["tumour_inter"], row["tumour_pred_voxels"], row["tumour_ref_voxels"]) == (
        100, 100, 200,
    )  # fmt: skip


def test_pixel_metrics_auc_and_ap():
    pred = np.array([1, 1, 0, 0, 1, 0], bool)
    ref = np.array([1, 0, 1, 0, 1, 0], bool)
    counts = confusion_counts(pred, ref)
    assert counts == {"tp": 2, "fp": 1, "fn": 1, "tn": 2}
    assert pixel_scores(**counts) == {"accuracy": 4 / 6, "sensitivity": 2 / 3, "specificity": 2 / 3}
    # sklearn's documented example: roc_auc 0.75, average_precision 0.8333.
    auc, ap = roc_auc_ap(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
    assert auc == pytest.approx(0.75) and ap == pytest.approx(5 / 6)
    auc, ap = roc_auc_ap(np.full(4, 0.3), np.array([0, 1, 0, 1]))  # one tie: chance
    assert auc == 0.5 and ap == 0.5
    assert all(map(math.isnan, auc_ap_from_histograms(np.zeros(3), np.ones(3))))
    with pytest.raises(ValueError, match="softmax"):
        roc_auc_ap(np.array([0.2, np.nan]), np.array([0, 1]))


def test_score_case_with_probabilities():
    ref = np.zeros((12, 12, 6), np.uint8)
    ref[2:10, 2:10, 1:5] = 1
    ref[4:7, 4:7, 2:4] = 2
    probs = np.stack([ref == c for c in range(3)]).astype(np.float32) * 0.9 + 0.05
    row = score_case(ref, ref, SPACING, probs)
    for name in ("liver", "tumour"):
        assert row[f"{name}_auc"] == 1 and row[f"{name}_ap"] == 1
        assert row[f"{name}_accuracy"] == row[f"{name}_sensitivity"] == 1
    assert math.isnan(score_case(ref, ref, SPACING)["liver_auc"])
    with pytest.raises(ValueError, match=r"probs shape \(2, 12, 12, 6\)"):
        score_case(ref, ref, SPACING, probs[:2])


def test_bad_inputs_name_the_problem():
    a = np.zeros((4, 4, 4), np.uint8)
    with pytest.raises(ValueError, match=r"pred shape \(4, 4, 3\) and ref shape \(4, 4, 4\)"):
        score_case(a[..., :3], a, SPACING)
    with pytest.raises(ValueError, match="spacing"):
        score_case(a, a, (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="dtype float64"):
        score_case(a.astype(float), a, SPACING)


def test_summarise_subsets_pooling_and_global_dice():
    ref = np.zeros((16, 16, 8), np.uint8)
    ref[2:14, 2:14, 1:7] = 1
    with_tumour = ref.copy()
    with_tumour[4:8, 4:8, 2:5] = 2
    fp_only = ref.copy()
    fp_only[10:12, 10:12, 2:4] = 2
    rows = [
        score_case(with_tumour, with_tumour, SPACING) | {"case": "a"},  # extra keys are ignored
        score_case(fp_only, ref, SPACING),  # no reference tumour: fp counts, dice not averaged
        score_case(ref, with_tumour, SPACING),  # tumour missed: dice 0, hd95 NaN
    ]
    s = summarise(rows)
    assert (s["cases"], s["liver_cases"], s["tumour_cases"]) == (3, 3, 2)
    assert s["tumour_dice_mean"] == 0.5 and s["tumour_dice_n"] == 2
    assert s["tumour_hd95_n"] == 1 and s["tumour_hd95_mean"] == 0
    assert (s["tumour_tp"], s["tumour_fp"], s["tumour_fn"]) == (1, 1, 1)
    assert s["tumour_precision"] == 0.5 and s["tumour_f1"] == 0.5
    inter = sum(r["tumour_inter"] for r in rows)
    sizes = sum(r["tumour_pred_voxels"] + r["tumour_ref_voxels"] for r in rows)
    assert s["tumour_dice_global"] == global_dice(rows)["tumour_dice_global"] == 2 * inter / sizes
    with pytest.raises(ValueError, match="liver_ref_voxels"):
        summarise([{"case": "x"}])


@pytest.mark.parametrize("seed", range(5))
def test_matches_medpy(seed):
    import medpy.metric.binary as mb  # a declared test dependency: missing must fail

    pred, ref = blobs(2 * seed), blobs(2 * seed + 1)
    s = binary_scores(pred, ref, SPACING)
    expected = {
        "dice": mb.dc(pred, ref), "jaccard": mb.jc(pred, ref), "rvd": mb.ravd(pred, ref),
        "assd": mb.assd(pred, ref, SPACING), "msd": mb.hd(pred, ref, SPACING),
        "hd95": mb.hd95(pred, ref, SPACING),
    }  # fmt: skip
    for key, value in expected.items():
        assert s[key] == pytest.approx(value, abs=1e-6), key


@pytest.mark.parametrize("seed", range(3))
def test_score_case_crop_matches_medpy_on_labels(seed):
    import medpy.metric.binary as mb  # a declared test dependency: missing must fail

    shape = (40, 30, 20)
    ref = np.zeros(shape, np.uint8)
    ref[8:30, 5:22, :] = blobs(seed, (22, 17, 20), 0.0)  # a box inside, touching both z ends
    ref[blobs(seed + 10, shape, 1.0) & (ref > 0)] = 2
    pred = np.roll(ref, (1, 2, 0), axis=(0, 1, 2))
    pred[3:20, :26][blobs(seed + 20, (17, 26, 20), 1.5)] = 2  # tumour in and beyond the liver
    row = score_case(pred, ref, SPACING)
    for name, p, r in (("liver", pred >= 1, ref >= 1), ("tumour", pred == 2, ref == 2)):
        assert row[f"{name}_dice"] == pytest.approx(mb.dc(p, r), abs=1e-6)
        assert row[f"{name}_assd"] == pytest.approx(mb.assd(p, r, SPACING), abs=1e-6)
        assert row[f"{name}_msd"] == pytest.approx(mb.hd(p, r, SPACING), abs=1e-6)
        assert row[f"{name}_hd95"] == pytest.approx(mb.hd95(p, r, SPACING), abs=1e-6)


@pytest.mark.parametrize("seed", range(3))
def test_detection_matches_a_loop_over_lesions(seed):
    face = ndimage.generate_binary_structure(3, 1)
    ref, pred = blobs(seed, level=1.2), blobs(seed + 50, level=1.2)
    pred[:, :, :9] |= ref[:, :, :9]  # half the lesions found, some merged with predictions
    ref_ids, n_ref = ndimage.label(ref, face)
    pred_ids, n_pred = ndimage.label(pred, face)
    tp = 0
    for i in range(1, n_ref + 1):
        lesion = ref_ids == i
        hit = np.isin(pred_ids, np.unique(pred_ids[lesion & pred]))
        tp += np.count_nonzero(lesion & hit) / np.count_nonzero(lesion | hit) > 0.5
    fp = sum(not (ref & (pred_ids == j)).any() for j in range(1, n_pred + 1))
    got = detect_lesions(pred, ref)
    assert (got["tp"], got["fp"], got["fn"]) == (tp, fp, n_ref - tp) and 0 < tp < n_ref


def test_liver_only_scoring_leaves_tumour_unscored():
    """A binary model's case: liver metrics as usual, every tumour number NaN (not a miss),
    and summaries that skip them instead of failing."""
    ref = np.zeros((12, 12, 6), np.uint8)
    ref[2:9, 2:9, 1:5] = 1
    ref[4:6, 4:6, 2:4] = 2
    pred = (ref > 0).astype(np.uint8)  # liver incl. tumour, as a binary model labels it
    probs = np.stack([1.0 - pred, pred]).astype(np.float32)
    row = score_case(pred, ref, SPACING, probs, structures=("liver",))
    assert row["liver_dice"] == 1.0 and row["liver_auc"] == 1.0
    tumour = [k for k in row if k.startswith("tumour_") or k.startswith("burden")]
    assert tumour and all(math.isnan(row[k]) for k in tumour)
    summary = summarise([row, row])
    assert summary["liver_dice_mean"] == 1.0 and summary["tumour_cases"] == 0
    assert math.isnan(summary["tumour_dice_mean"]) and math.isnan(summary["tumour_dice_global"])
    with pytest.raises(ValueError, match=r"expected \(2, "):
        score_case(pred, ref, SPACING, np.stack([probs[0]] * 3), structures=("liver",))
