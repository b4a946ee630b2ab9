"""Metrics speed: seconds of one ``score_case`` on a LiTS-sized synthetic pair (512²×500) on
one CPU, against an absolute 10 s target (there is no baseline to compare with)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from livseg.benchmarks.windows import rates, summary


def metrics_case(size: int = 512, slices: int = 500, seed: int = 0) -> dict[str, Any]:
    """A synthetic (size, size, slices) pair: an ellipsoid liver of ~1.5 M voxels (at 512²×500)
    with five spherical tumours; the prediction shifted by (2, −1, 1) voxels, one tumour missed,
    one false-positive blob far from the liver and a probability map from both."""
    rng = np.random.default_rng(seed)
    shape, k = (size, size, slices), size / 512
    ref = np.zeros(shape, np.uint8)
    centre = np.array([0.49 * size, 0.5 * size, 0.5 * slices])
    axes = np.array([90 * k, 70 * k, 57 * slices / 500])
    lo, hi = (centre - axes - 1).astype(int), (centre + axes + 2).astype(int)
    x, y, z = np.ogrid[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    d = ((x - centre[0]) / axes[0]) ** 2 + ((y - centre[1]) / axes[1]) ** 2
    d = d + ((z - centre[2]) / axes[2]) ** 2
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    ref[box][d <= 1] = 1
    tumours = []
    for _ in range(5):
        c = centre + rng.uniform(-0.5, 0.5, 3) * axes
        radius = rng.uniform(3, 12) * k
        t = ((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2 <= radius**2) & (d <= 1)
        ref[box][t] = 2
        tumours.append(t)
    pred = np.roll(ref, (2, -1, 1), axis=(0, 1, 2))
    miss = np.roll(tumours[0], (2, -1, 1), axis=(0, 1, 2))
    pred[box][miss & (pred[box] == 2)] = 1
    far = tuple(slice(int(0.05 * n), int(0.05 * n) + max(2, int(10 * k))) for n in shape)
    pred[far] = 1
    probs = np.empty((3, *shape), np.float32)
    for c in range(3):
        probs[c] = np.where(pred == c, np.float32(0.8), np.float32(0.1))
    return {"pred": pred, "ref": ref, "spacing": (0.7, 0.7, 0.8), "probs": probs}


def bench_metrics(
    size: int = 512, slices: int = 500, repeats: int = 3, seed: int = 0
) -> dict[str, Any]:
    """Seconds of one ``score_case`` on a LiTS-sized synthetic pair, without and with probs:
    median, min and max of ``repeats`` calls each after one warm-up call.

    Runs pinned to one CPU (``os.sched_setaffinity`` where the OS has it). score_case's numpy
    element-wise work, scipy.ndimage and the KDTree queries are single-threaded anyway; nothing
    in it calls BLAS or torch.
    """
    import os

    from livseg.evaluate import score_case

    case = metrics_case(size, slices, seed)
    pinned = hasattr(os, "sched_setaffinity")
    cpus = os.sched_getaffinity(0) if pinned else set()
    if pinned:
        os.sched_setaffinity(0, {min(cpus)})
    try:
        labels_s = seconds(lambda: score_case(case["pred"], case["ref"], case["spacing"]), repeats)
        probs_s = seconds(
            lambda: score_case(case["pred"], case["ref"], case["spacing"], case["probs"]), repeats
        )
        row = score_case(case["pred"], case["ref"], case["spacing"])
    finally:
        if pinned:
            os.sched_setaffinity(0, cpus)
    return {
        "shape": list(case["ref"].shape),
        "liver_voxels": row["liver_ref_voxels"],
        "tumour_voxels": row["tumour_ref_voxels"],
        "one_cpu": pinned,
        "score_case_s": labels_s,
        "score_case_with_probs_s": probs_s,
        "score_case_s_target_max": 10.0,
    }


def seconds(call: Callable[[], object], repeats: int) -> dict[str, float]:
    """Seconds per call: one untimed warm-up, then ``repeats`` timed calls."""

    def one_call() -> float:
        call()
        return 1.0  # one unit of work: rates are calls per second

    return summary([1 / r for r in rates(one_call, repeats)])
