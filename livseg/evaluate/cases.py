"""One case at a time, never raising: score a mask file pair or segment a case with a model,
then score it; a case that fails becomes an ``error`` row naming its files. Pure of Ray."""

from __future__ import annotations

import functools
import hashlib
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from livseg.data import STRUCTURES
from livseg.errors import describe_error
from livseg.evaluate.lits import score_case
from livseg.io import VolumeError, align_labels, read_case, read_nifti, storage

FIGURE_SIZE = 256  # case figures are downsampled to at most this many pixels a side


@dataclass
class ModelResult:
    """Per-case rows (``status`` ok/error) and a few case figures of one model or folder."""

    label: str
    source: str
    rows: list[dict[str, Any]]
    figures: list[dict[str, Any]] = field(default_factory=list)
    curves: bytes | None = None  # the training run's curves.png, when it can be found
    info: dict[str, Any] = field(default_factory=dict)


def confusion3(pred: np.ndarray, ref: np.ndarray) -> list[int]:
    """3×3 voxel confusion (rows = reference 0/1/2, columns = prediction), flattened."""
    idx = np.minimum(ref, 2).astype(np.int64).ravel() * 3 + np.minimum(pred, 2).ravel()
    return np.bincount(idx, minlength=9).tolist()


def figure_slice(
    hu: np.ndarray | None, ref: np.ndarray, pred: np.ndarray, spacing: tuple[float, ...]
) -> dict[str, Any]:
    """The axial slice that shows most reference tumour (else liver), small enough for a report.

    Returns ``image`` (x, y) windowed HU float16 (zeros without a CT), ``ref``/``pred`` (x, y)
    uint8, ``z`` and the displayed pixel aspect.
    """
    area = (ref == 2).sum(axis=(0, 1))
    if not area.any():
        area = (ref >= 1).sum(axis=(0, 1)) + (pred >= 1).sum(axis=(0, 1))
    z = int(np.argmax(area))
    step = max(1, math.ceil(max(ref.shape[:2]) / FIGURE_SIZE))
    image = np.zeros(ref.shape[:2], np.float32) if hu is None else np.clip(hu[:, :, z], -200, 250)
    return {
        "image": image[::step, ::step].astype(np.float16),
        "ref": ref[::step, ::step, z].copy(),
        "pred": pred[::step, ::step, z].copy(),
        "z": z,
        "aspect": float(spacing[1] / spacing[0]),
    }


def case_row(
    case_id: int, name: str, pred, ref, spacing, probs=None, structures=STRUCTURES
) -> dict[str, Any]:
    row = {"case_id": case_id, "case": name, "status": "ok", "error": ""}
    row["spacing"] = "x".join(f"{s:.3g}" for s in spacing)
    row.update(score_case(pred, ref, spacing, probs, structures))
    row.update({f"conf_{i // 3}{i % 3}": v for i, v in enumerate(confusion3(pred, ref))})
    return row


def error_row(case_id: int, name: str, exc: BaseException) -> dict[str, Any]:
    return {"case_id": case_id, "case": name, "status": "error", "error": describe_error(exc)}


def figure_ct(image_uri: str | None, ref) -> np.ndarray | None:
    """The CT beside a reference mask, for figures only (None when absent or on another grid)."""
    if not image_uri:
        return None
    try:
        ct = read_nifti(image_uri)
    except VolumeError:
        return None
    return ct.array if ct.array.shape == ref.array.shape else None


def score_mask_pair(
    case_id: int, pred_uri: str | None, ref_uri: str, image_uri: str | None = None
) -> dict[str, Any]:
    """Score one predicted mask file against its reference; never raises (error row instead).

    ``image_uri``: the case's CT, only used to draw the case figure.
    """
    started = time.time()
    name = storage.basename(ref_uri)
    try:
        if pred_uri is None:
            raise VolumeError(f"{ref_uri}: no predicted segmentation-{case_id} mask found")
        ref = read_nifti(ref_uri, labels=True)
        pred = align_labels(read_nifti(pred_uri, labels=True), ref)  # read_case's rule
        row = case_row(case_id, name, pred, ref.array, ref.spacing)
        hu = figure_ct(image_uri, ref)
        figure = figure_slice(hu, ref.array, pred, ref.spacing)
    except Exception as exc:  # noqa: BLE001 - one bad case must never stop the batch
        return {"row": error_row(case_id, name, exc), "figure": None}
    row["seconds"] = round(time.time() - started, 2)
    return {"row": row, "figure": {"case_id": case_id, **figure}}


def cached_segmenter(checkpoint: str):
    """The checkpoint's model, loaded once per Ray worker process (Ray reuses them) and again
    when its ``meta.json`` changes (a lesion rule recorded after an earlier load)."""
    meta = storage.read_bytes(storage.join(checkpoint, "meta.json"))
    return _load_segmenter(checkpoint, hashlib.sha256(meta).hexdigest())


@functools.lru_cache(maxsize=2)
def _load_segmenter(checkpoint: str, meta_digest: str):
    from livseg.inference import load_segmenter  # torch only where models run

    return load_segmenter(checkpoint)


def score_model_case(checkpoint: str, case: dict[str, Any]) -> dict[str, Any]:
    """Segment one raw case with ``checkpoint`` and score it; never raises."""
    started = time.time()
    name = storage.basename(case["image_uri"])
    try:
        if not case["mask_uri"]:
            raise VolumeError(f"{case['image_uri']}: no segmentation-{case['case_id']} mask")
        volume, ref = read_case(case["image_uri"], case["mask_uri"])
        segmenter = cached_segmenter(checkpoint)
        result = segmenter.segment(volume.array, spacing=volume.spacing, keep_probs=True)
        pred, probs = result.labels, result.probs
        # A binary model (the study's liver+tumour vs background) is scored on the liver only.
        structures = ("liver",) if segmenter.binary else STRUCTURES
        row = case_row(case["case_id"], name, pred, ref, volume.spacing, probs, structures)
        row["certainty"] = result.certainty  # what the review flag reads (None: no liver)
        figure = figure_slice(volume.array, ref, pred, volume.spacing)
    except Exception as exc:  # noqa: BLE001 - one bad case must never stop the batch
        return {"row": error_row(case["case_id"], name, exc), "figure": None}
    row["seconds"] = round(time.time() - started, 2)
    return {"row": row, "figure": {"case_id": case["case_id"], **figure}}
