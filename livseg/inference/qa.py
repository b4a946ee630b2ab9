"""Quality signals for radiologist triage (numpy in, dict out).

A study is flagged for review, with every reason, when:
- no liver is found;
- the model is unsure: the mean winning softmax probability over the voxels it labels liver or
  tumour (``certainty``) is below ``min_certainty``;
- the model disagrees with itself: a second pass on the volume shifted by a few voxels in-plane
  (an augmentation the model was trained with), shifted back, labels the liver region
  differently (``agreement`` below ``min_agreement``). Not a left/right flip: whole-slice
  training leaves flips off because the mirrored spleen looks like a liver (only a cascade's
  tumour stage, inside the liver box, mirrors), so a flipped pass would disagree on every study;
- the liver volume is outside a plausible adult range (``liver_ml``);
- the liver is cut off: a large part of its cross-section lies on a face of the volume.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from livseg.data import LIVER

# Canonical RAS+: index 0 along x is the patient's left-most column, along y posterior,
# along z inferior.
_FACES = (("left", 0, 0), ("right", 0, -1), ("posterior", 1, 0), ("anterior", 1, -1),
          ("inferior", 2, 0), ("superior", 2, -1))  # fmt: skip


@dataclass(frozen=True)
class ReviewLimits:
    """Thresholds of the review flag; the defaults suit adult abdominal CT."""

    min_certainty: float = 0.94  # mean top softmax probability inside the labelled liver
    min_agreement: float = 0.90  # share of the liver region labelled alike by both passes
    liver_ml: tuple[float, float] = (400.0, 4000.0)  # plausible adult liver volume
    edge_fraction: float = 0.2  # liver on a face ≥ this × its largest cross-section → cut off

    @classmethod
    def for_model(cls, min_certainty: float | None = None, **limits) -> ReviewLimits:
        """The limits with a model's calibrated ``min_certainty`` (None: the default)."""
        if min_certainty is not None:
            limits["min_certainty"] = min_certainty
        return cls(**limits)

    def __post_init__(self) -> None:
        for key in ("min_certainty", "min_agreement"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ValueError(f"{key}={getattr(self, key)}: must be within [0, 1]")
        if not 0.0 <= self.liver_ml[0] < self.liver_ml[1]:
            raise ValueError(f"liver_ml={self.liver_ml}: expected (low, high) mL with low < high")
        if not 0.0 < self.edge_fraction <= 1.0:
            raise ValueError(f"edge_fraction={self.edge_fraction}: must be within (0, 1]")


def model_certainty_limit(meta: dict) -> float | None:
    """The confidence limit a checkpoint's ``meta.json`` records (``review.min_certainty``,
    calibrated on its validation cases by ``livseg.evaluate.calibrate_review``); None: none."""
    value = meta.get("review", {}).get("min_certainty")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(
            f"meta.json review.min_certainty={value!r} must be within [0, 1]: remove it, or "
            "recalibrate the checkpoint (livseg.evaluate.calibrate_review)"
        )
    return float(value)


def pass_agreement(labels: np.ndarray, other: np.ndarray) -> float:
    """Share of voxels labelled liver or tumour by either pass on which both passes agree
    (1.0 = identical, 0.0 = disjoint; 1.0 when neither pass finds a liver). (X, Y, Z) each."""
    region = (labels >= LIVER) | (other >= LIVER)
    total = int(region.sum())
    if total == 0:
        return 1.0
    return float((labels[region] == other[region]).sum() / total)


def cut_faces(labels: np.ndarray, fraction: float) -> list[str]:
    """Faces of a canonical (X, Y, Z) volume on which the liver's cross-section is at least
    ``fraction`` of its largest cross-section along the same axis (e.g. ``["superior"]``)."""
    liver = labels >= LIVER
    faces = []
    for name, axis, index in _FACES:
        areas = liver.sum(axis=tuple(a for a in range(3) if a != axis))
        if areas.max() > 0 and areas[index] >= fraction * areas.max():
            faces.append(name)
    return faces


def review(
    labels: np.ndarray,
    statistics: dict,
    certainty: float | None,
    agreement: float | None,
    limits: ReviewLimits,
) -> dict:
    """``{"confidence", "min_certainty", "agreement", "review", "reasons"}`` for one study:
    ``confidence`` is the certainty, ``min_certainty`` the limit it was held to; ``agreement``
    None when the second pass was not run."""
    reasons = []
    liver_ml = statistics["liver_ml"]
    if liver_ml == 0:
        reasons.append("no liver found")
    else:
        if certainty is not None and certainty < limits.min_certainty:
            reasons.append(
                f"low confidence: mean probability {certainty:.3f} inside the liver "
                f"(< {limits.min_certainty:.3f})"
            )
        if agreement is not None and agreement < limits.min_agreement:
            reasons.append(
                f"unstable: a shifted second pass agrees on {agreement:.2f} of the liver "
                f"region (< {limits.min_agreement:.2f})"
            )
        low, high = limits.liver_ml
        if not low <= liver_ml <= high:
            reasons.append(f"liver volume {liver_ml:.0f} mL outside {low:.0f}–{high:.0f} mL")
        faces = cut_faces(labels, limits.edge_fraction)
        if faces:
            reasons.append(f"liver touches the {'/'.join(faces)} edge of the volume: cut off?")
    return {
        "confidence": None if certainty is None else round(certainty, 4),
        "min_certainty": limits.min_certainty,
        "agreement": None if agreement is None else round(agreement, 4),
        "review": bool(reasons),
        "reasons": reasons,
    }
