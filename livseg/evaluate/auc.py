"""ROC AUC and average precision of probability maps, from score histograms.

AUC / AP come from score histograms of 10001 bins centred on k / 10000: exact for scores on
that grid, otherwise scores rounding to one bin count as ties (on a smooth map AUC is within
~1e-8 of the exact value); 131 M voxels then cost two fast passes instead of a sort.
"""

from __future__ import annotations

import math

import numpy as np

HISTOGRAM_BINS = 10001  # AUC / AP score bins, centred on k / 10000
_CHUNK_VOXELS = 1 << 20  # probability maps are binned in slabs of this many voxels


def score_histogram(scores: np.ndarray, bins: int = HISTOGRAM_BINS) -> np.ndarray:
    """Counts (bins,) int64 of scores in [0, 1] rounded to the nearest of ``bins`` bin centres.

    Shape: ``scores`` any. Binned in slabs through reused buffers: fresh 100 MB temporaries
    would cost more in page faults than the arithmetic.
    """
    flat = np.asarray(scores).reshape(-1)
    hist = np.zeros(bins, np.int64)
    key = np.empty(min(flat.size, _CHUNK_VOXELS), np.float32)
    index = np.empty(key.size, np.int64)
    for start in range(0, flat.size, _CHUNK_VOXELS):
        slab = flat[start : start + _CHUNK_VOXELS]
        lo, hi = slab.min(), slab.max()
        if not (lo >= -1e-3 and hi <= 1 + 1e-3):  # NaN fails both
            raise ValueError(
                f"probabilities between {lo} and {hi}: expected softmax outputs in [0, 1] "
                "(apply softmax to the logits first)"
            )
        k, i = key[: slab.size], index[: slab.size]
        np.multiply(slab, bins - 1, out=k, dtype=np.float32)  # float32 even for float16
        np.clip(np.rint(k, out=k), 0, bins - 1, out=k)
        i[...] = k
        hist += np.bincount(i, minlength=bins)
    return hist


def auc_ap_from_histograms(pos: np.ndarray, neg: np.ndarray) -> tuple[float, float]:
    """ROC AUC (trapezoid, ties as diagonals) and average precision (sklearn's step sum) from
    score histograms of positives and negatives over the same ascending bins."""
    n_pos, n_neg = pos.sum(), neg.sum()
    tp, fp = np.cumsum(pos[::-1]), np.cumsum(neg[::-1])  # threshold falling from the top bin
    auc = math.nan
    if n_pos and n_neg:
        tpr = np.concatenate([[0.0], tp / n_pos])
        auc = float(np.sum(np.diff(np.concatenate([[0.0], fp / n_neg])) * (tpr[1:] + tpr[:-1]))) / 2
    hit = pos[::-1] > 0
    ap = (
        float(np.sum(pos[::-1][hit] * tp[hit] / (tp[hit] + fp[hit])) / n_pos) if n_pos else math.nan
    )
    return auc, ap


def roc_auc_ap(
    scores: np.ndarray, target: np.ndarray, bins: int = HISTOGRAM_BINS
) -> tuple[float, float]:
    """(ROC AUC, average precision) of scores in [0, 1] against a boolean target, same shape."""
    if scores.shape != target.shape:
        raise ValueError(f"scores shape {scores.shape} and target shape {target.shape} differ")
    pos = score_histogram(scores[target.astype(bool, copy=False)], bins)
    return auc_ap_from_histograms(pos, score_histogram(scores, bins) - pos)
