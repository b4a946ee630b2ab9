"""LiTS evaluation metrics in numpy/scipy, case by case and summarised over cases.

Structures follow LiTS: liver = label ≥ 1 (liver incl. tumour), tumour = label 2.
``score_case`` (one (X, Y, Z) label volume pair with spacing in mm) follows the LiTS scorer,
which used ``medpy.metric.binary``: dice, jaccard, voe = 1 − jaccard, rvd = (|pred| − |ref|) /
|ref| (medpy ``ravd``), and ``evaluate.surface`` assd / msd (Hausdorff) / hd95 in mm.
Conventions where a mask is empty (medpy raises; the LiTS scorer put 9001):

- both empty: dice 1, jaccard 1, voe 0, rvd 0, assd / msd / hd95 0;
- one empty: dice 0, jaccard 0, voe 1; rvd −1 (pred empty) or +inf (ref empty, (|pred|−0)/0);
  assd / msd / hd95 NaN (undefined; the miss already shows in dice and detection);
- tumour burden (tumour / liver voxels) NaN when that mask has no liver; burden_error NaN then;
- detection precision / recall / F1 NaN when their denominator is 0 (F1 = 2tp / (2tp+fp+fn));
- sensitivity / specificity NaN without reference positives / negatives; AUC NaN unless both
  classes occur, AP NaN without positives.

Lesion detection: reference and predicted tumour are split into connected components with
face connectivity (scipy's default, as the LiTS scorer labelled them). A reference lesion is
detected (tp) when its IoU with the union of all predicted components touching it is > 0.5;
fn = undetected reference lesions; fp = predicted components touching no reference lesion.
Unlike the LiTS scorer we neither merge reference lesions bridged by one prediction nor count a
touching but unmatched prediction as fp (LiTS: fp = predicted components − detected).

``score_case`` keys: ``voxels``; for s in liver, tumour: ``s_dice``, ``_jaccard``, ``_voe``,
``_rvd``, ``_assd``, ``_msd``, ``_hd95``, ``_accuracy``, ``_sensitivity``, ``_specificity``,
``_auc``, ``_ap`` (NaN without probs), ``_inter``, ``_pred_voxels``, ``_ref_voxels``,
``_ml_ref``, ``_ml_pred``; detection ``tumour_tp``, ``_fp``, ``_fn``, ``_precision``,
``_recall``, ``_f1``; the same counts for lesions of at least a 10 mm sphere's volume
(≈ 524 mm³: a size by volume, not the longest diameter RECIST measures) ``tumour10_tp`` /
``_fp`` / ``_fn`` (``summarise`` adds their precision / recall / F1);
``burden_ref``, ``burden_pred``, ``burden_error`` (absolute).

``summarise``: each metric's mean, median and count over cases skipping NaN; liver and burden
metrics over cases whose reference has liver, tumour metrics over cases whose reference has
tumour; detection tp / fp / fn summed over all cases, precision / recall / F1 from the sums;
global Dice pooled over all cases (``global_dice``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import ndimage

from livseg.data import STRUCTURES, bounding_box
from livseg.evaluate.auc import auc_ap_from_histograms, score_histogram
from livseg.evaluate.surface import as_spacing, surface_scores

DETECTION_IOU = 0.5  # LiTS: a reference lesion is detected above this IoU
LARGE_LESION_MM3 = math.pi / 6 * 10.0**3  # a 10 mm sphere: the "≥ 10 mm" lesion size
_AVERAGED = (
    "dice", "jaccard", "voe", "rvd", "assd", "msd", "hd95",
    "accuracy", "sensitivity", "specificity", "auc", "ap", "ml_ref", "ml_pred",
)  # fmt: skip


def _ratio(num: float, den: float) -> float:
    return num / den if den else math.nan


def overlap_scores(inter: int, n_pred: int, n_ref: int) -> dict[str, float]:
    """Dice, Jaccard, VOE and RVD from voxel counts (overlap, predicted, reference)."""
    union = n_pred + n_ref - inter
    if union == 0:
        return {"dice": 1.0, "jaccard": 1.0, "voe": 0.0, "rvd": 0.0}
    jaccard = inter / union
    rvd = (n_pred - n_ref) / n_ref if n_ref else math.inf
    return {
        "dice": 2 * inter / (n_pred + n_ref),
        "jaccard": jaccard,
        "voe": 1 - jaccard,
        "rvd": rvd,
    }


def _check_pair(
    a: np.ndarray, b: np.ndarray, names: tuple[str, str] = ("pred", "ref"), ndim: int = 0
) -> None:
    if a.shape != b.shape or (ndim and b.ndim != ndim):
        want = f"{ndim}-D arrays of one shape" if ndim else "arrays of one shape"
        raise ValueError(
            f"{names[0]} shape {a.shape} and {names[1]} shape {b.shape}: expected {want}"
        )


def binary_scores(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> dict[str, float]:
    """Dice, Jaccard, VOE, RVD, ASSD, MSD and HD95 (mm) of two boolean masks of one shape."""
    _check_pair(pred, ref)
    pred, ref = pred.astype(bool, copy=False), ref.astype(bool, copy=False)
    counts = np.count_nonzero(pred & ref), np.count_nonzero(pred), np.count_nonzero(ref)
    return overlap_scores(*counts) | surface_scores(pred, ref, spacing)


def detection_scores(tp: int, fp: int, fn: int) -> dict[str, float]:
    """Lesion counts with precision, recall and F1 (NaN where the denominator is 0)."""
    return {
        "tp": tp, "fp": fp, "fn": fn,
        "precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
    }  # fmt: skip


def _components(mask: np.ndarray) -> tuple[np.ndarray, int, tuple[slice, ...]]:
    """Face-connected component ids of a mask inside its bounding box, their count, the box."""
    box = bounding_box(mask) or (slice(0, 0),) * mask.ndim
    ids, n = ndimage.label(mask[box], ndimage.generate_binary_structure(mask.ndim, 1))
    return ids, n, box


def _part(ids: np.ndarray, box: tuple[slice, ...], region: tuple[slice, ...]) -> np.ndarray:
    """The part of ``ids`` (an array covering ``box``) inside ``region``; empty if disjoint."""
    return ids[
        tuple(slice(r.start - b.start, r.stop - b.start) for r, b in zip(region, box, strict=True))
    ]


def detect_lesions(
    pred: np.ndarray, ref: np.ndarray, min_iou: float = DETECTION_IOU, min_voxels: int = 0
) -> dict[str, float]:
    """Lesion detection of two boolean tumour masks of one shape (rule in the module docstring).

    ``min_voxels``: only reference lesions of at least this size count (tp / fn), and only
    predicted components of at least this size that touch no reference lesion count as fp."""
    _check_pair(pred, ref)
    # Each mask is labelled inside its own box: a far false positive must not make both large.
    (ref_ids, n_ref, ref_box), (pred_ids, n_pred, pred_box) = _components(ref), _components(pred)
    common = tuple(
        slice(max(a.start, b.start), max(a.start, b.start, min(a.stop, b.stop)))
        for a, b in zip(ref_box, pred_box, strict=True)
    )
    r, p = _part(ref_ids, ref_box, common), _part(pred_ids, pred_box, common)
    both = (r > 0) & (p > 0)
    r, p = r[both].astype(np.int64), p[both].astype(np.int64)
    # Distinct (reference, predicted) component pairs that share voxels.
    pair_r, pair_p = np.divmod(np.unique(r * (n_pred + 1) + p), n_pred + 1)
    ref_size = np.bincount(ref_ids[ref_ids > 0], minlength=n_ref + 1)[1:]
    pred_size = np.bincount(pred_ids[pred_ids > 0], minlength=n_pred + 1)
    covered = np.bincount(r, minlength=n_ref + 1)[1:]  # predicted components are disjoint
    touching = np.bincount(pair_r, weights=pred_size[pair_p], minlength=n_ref + 1)[1:]
    iou = covered / (ref_size + touching - covered)
    counted = ref_size >= min_voxels
    tp = int(np.count_nonzero((iou > min_iou) & counted))
    lonely = np.ones(n_pred + 1, bool)
    lonely[0], lonely[pair_p] = False, False
    fp = int(np.count_nonzero(lonely & (pred_size >= min_voxels)))
    return detection_scores(tp, fp, int(counted.sum()) - tp)


def volume_ml(voxels: int, spacing: Sequence[float]) -> float:
    """Volume in mL of ``voxels`` voxels of size ``spacing`` mm."""
    return float(voxels * np.prod(as_spacing(spacing, len(spacing))) / 1000)


def pixel_scores(tp: int, fp: int, fn: int, tn: int) -> dict[str, float]:
    """Accuracy, sensitivity and specificity from a binary voxel confusion."""
    return {
        "accuracy": _ratio(tp + tn, tp + fp + fn + tn),
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
    }


def confusion_counts(pred: np.ndarray, ref: np.ndarray) -> dict[str, int]:
    """Voxel confusion tp / fp / fn / tn of two boolean masks of one shape."""
    _check_pair(pred, ref)
    tp = int(np.count_nonzero(pred & ref))
    n_pred, n_ref = int(np.count_nonzero(pred)), int(np.count_nonzero(ref))
    return {"tp": tp, "fp": n_pred - tp, "fn": n_ref - tp, "tn": ref.size - n_pred - n_ref + tp}


def score_case(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float],
    probs: np.ndarray | None = None,
    structures: Sequence[str] = STRUCTURES,
) -> dict[str, float]:
    """Every per-case LiTS metric of a predicted label volume against its reference.

    Shape: ``pred``/``ref`` (X, Y, Z) integer labels (0 background, 1 liver, 2 tumour);
    ``spacing`` (3,) mm; ``probs`` optional (classes, X, Y, Z) softmax, scored as liver =
    1 − p[0] and tumour = p[2]. ``structures=("liver",)`` scores a model that does not tell
    tumour from liver (the study's binary labels): every tumour key, detection and burden is
    then NaN (not scored), never a miss. Returns a flat dict of numbers (keys: module doc).
    """
    _check_pair(pred, ref, ndim=3)
    for name, a in (("pred", pred), ("ref", ref)):
        if not (np.issubdtype(a.dtype, np.integer) or a.dtype == bool):
            raise ValueError(f"{name} has dtype {a.dtype}: expected integer labels (astype uint8)")
    step = as_spacing(spacing)
    classes = 3 if "tumour" in structures else 2
    if probs is not None and probs.shape != (classes, *ref.shape):
        raise ValueError(
            f"probs shape {probs.shape}: expected ({classes}, *{ref.shape}), the softmax over "
            f"{'(background, liver, tumour)' if classes == 3 else '(background, liver)'} on the "
            "label grid"
        )
    # Everything outside the box around both masks is background in both, so counts, surfaces
    # (erosion reads background there either way) and components are the same on the crop.
    box = bounding_box((pred > 0) | (ref > 0)) or (slice(0, 0),) * 3
    p, r = pred[box], ref[box]
    out: dict[str, float] = {"voxels": ref.size}
    for name, pm, rm in (("liver", p >= 1, r >= 1), ("tumour", p == 2, r == 2)):
        if name not in structures:
            continue
        inter, n_pred, n_ref = (int(np.count_nonzero(m)) for m in (pm & rm, pm, rm))
        scores = overlap_scores(inter, n_pred, n_ref) | surface_scores(pm, rm, step)
        scores |= pixel_scores(
            inter, n_pred - inter, n_ref - inter, ref.size - n_pred - n_ref + inter
        )
        scores["auc"] = scores["ap"] = math.nan
        if probs is not None:
            # Liver scores 1 − p[0]: mirror the bins of p[0] instead of another full pass.
            channel, flip = (probs[0], -1) if name == "liver" else (probs[2], 1)
            pos = score_histogram(channel[box][rm])[::flip]
            scores["auc"], scores["ap"] = auc_ap_from_histograms(
                pos, score_histogram(channel)[::flip] - pos
            )
        scores |= {"inter": inter, "pred_voxels": n_pred, "ref_voxels": n_ref}
        scores |= {"ml_ref": volume_ml(n_ref, step), "ml_pred": volume_ml(n_pred, step)}
        out |= {f"{name}_{k}": v for k, v in scores.items()}
    if "tumour" not in structures:
        tumour_keys = [k.replace("liver_", "tumour_") for k in out if k.startswith("liver_")]
        detection = ("tp", "fp", "fn", "precision", "recall", "f1")
        nan_keys = tumour_keys + [f"tumour_{k}" for k in detection] + ["burden_ref", "burden_pred"]
        nan_keys += [f"tumour10_{k}" for k in detection[:3]]
        return out | dict.fromkeys([*nan_keys, "burden_error"], math.nan)
    out |= {f"tumour_{k}": v for k, v in detect_lesions(p == 2, r == 2).items()}
    large = detect_lesions(p == 2, r == 2, min_voxels=math.ceil(LARGE_LESION_MM3 / np.prod(step)))
    out |= {f"tumour10_{k}": large[k] for k in ("tp", "fp", "fn")}
    for side in ("ref", "pred"):
        out[f"burden_{side}"] = _ratio(out[f"tumour_{side}_voxels"], out[f"liver_{side}_voxels"])
    out["burden_error"] = abs(out["burden_pred"] - out["burden_ref"])
    return out


def _column(rows: Sequence[Mapping[str, float]], key: str) -> np.ndarray:
    try:
        return np.array([row[key] for row in rows], dtype=np.float64)
    except KeyError:
        raise ValueError(f"a row lacks {key!r}: pass rows made by score_case") from None


def global_dice(rows: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Dice of each structure pooled over cases (``score_case`` rows); no voxel anywhere → 1,
    never scored (NaN in every row) → NaN."""
    out = {}
    for name in STRUCTURES:
        inter = _column(rows, f"{name}_inter")
        denom = _column(rows, f"{name}_pred_voxels") + _column(rows, f"{name}_ref_voxels")
        scored = ~np.isnan(inter)
        if not scored.any():
            out[f"{name}_dice_global"] = math.nan
            continue
        total = denom[scored].sum()
        out[f"{name}_dice_global"] = float(2 * inter[scored].sum() / total) if total else 1.0
    return out


def summarise(rows: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Means, medians and counts of per-case metrics, pooled detection and global Dice.

    Keys ``<metric>_mean`` / ``_median`` / ``_n``; case subsets as in the module docstring.
    Extra keys in the rows (case ids, file names) are ignored.
    """
    if len(rows) == 0:
        raise ValueError("no cases to summarise: pass at least one score_case row")
    present = {name: _column(rows, f"{name}_ref_voxels") > 0 for name in STRUCTURES}
    out: dict[str, float] = {"cases": len(rows)}
    out |= {f"{name}_cases": int(present[name].sum()) for name in STRUCTURES}
    keys = [f"{s}_{k}" for s in STRUCTURES for k in _AVERAGED]
    for key in keys + ["burden_ref", "burden_pred", "burden_error"]:
        values = _column(rows, key)[present["tumour" if key.startswith("tumour") else "liver"]]
        values = values[~np.isnan(values)]
        empty = len(values) == 0
        out[f"{key}_mean"] = math.nan if empty else float(values.mean())
        out[f"{key}_median"] = math.nan if empty else float(np.median(values))
        out[f"{key}_n"] = len(values)
    for prefix in ("tumour", "tumour10"):
        counts = (int(np.nansum(_column(rows, f"{prefix}_{k}"))) for k in ("tp", "fp", "fn"))
        out |= {f"{prefix}_{k}": v for k, v in detection_scores(*counts).items()}
    return out | global_dice(rows)
