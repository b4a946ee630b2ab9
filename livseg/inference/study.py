"""One study end to end: a ``Volume`` → labels on its canonical grid, statistics and QA."""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import numpy as np

from livseg.inference.qa import ReviewLimits, pass_agreement, review
from livseg.inference.segmenter import Segmenter
from livseg.inference.statistics import study_statistics
from livseg.io import Volume

SHIFT_FRACTION = 0.03  # the QA pass moves the volume by 3 % of its width (training shifts ±8 %)
AIR_HU = -1000.0


@dataclass(frozen=True)
class StudyResult:
    """``labels`` (X, Y, Z) uint8 on the volume's canonical grid; ``report`` JSON-ready:
    ``statistics`` (:func:`study_statistics`), ``qa`` (:func:`review`), ``seconds``."""

    labels: np.ndarray
    report: dict


def analyse_study(
    segmenter: Segmenter,
    volume: Volume,
    *,
    qa: bool = True,
    limits: ReviewLimits | None = None,
    lock: AbstractContextManager | None = None,
) -> StudyResult:
    """Segment ``volume`` and check the result (``livseg.inference.qa``); ``qa`` adds a second
    pass on the volume shifted in-plane (a confident model labels both alike; noise or anatomy
    it has not learnt makes them disagree), doubling the model's work. ``lock`` is held around
    each model pass only (a server shares one model between requests)."""
    start = time.perf_counter()
    with lock or nullcontext():
        segmentation = segmenter.segment(volume.array, spacing=volume.spacing)
    labels = segmentation.labels
    agreement = None
    if qa:
        agreement = shifted_agreement(segmenter, volume.array, labels, lock, volume.spacing)
    model_s = time.perf_counter() - start
    statistics = study_statistics(labels, volume.affine)
    checks = review(labels, statistics, segmentation.certainty, agreement,
                    limits or ReviewLimits.for_model(segmenter.min_certainty))  # fmt: skip
    report = {
        "shape": list(volume.source_shape),
        "axial_slices": int(volume.array.shape[2]),
        "spacing_mm": [round(s, 4) for s in volume.spacing],
        "statistics": statistics,
        "qa": checks,
        "seconds": {"model": round(model_s, 3), "total": round(time.perf_counter() - start, 3)},
    }
    return StudyResult(labels, report)


def shifted_agreement(
    segmenter: Segmenter,
    hu: np.ndarray,
    labels: np.ndarray,
    lock: AbstractContextManager | None = None,
    spacing: tuple[float, float, float] | None = None,
) -> float:
    """:func:`pass_agreement` of ``labels`` with a second pass on ``hu`` (X, Y, Z) moved by
    ``SHIFT_FRACTION`` of its size along x and y (air fills the gap), moved back; compared
    where both passes saw the same voxels. Given the ``spacing`` (mm) the second pass gets the
    lesion rule too, as the first did: the passes then differ by the model alone."""
    dx, dy = (max(1, round(SHIFT_FRACTION * n)) for n in hu.shape[:2])
    moved = np.full_like(hu, AIR_HU)
    moved[dx:, dy:] = hu[:-dx, :-dy]
    with lock or nullcontext():
        second = segmenter.segment(moved, spacing=spacing).labels
    return pass_agreement(labels[:-dx, :-dy], second[dx:, dy:])
