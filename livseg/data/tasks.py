"""The per-case work of preprocessing, pure of Ray: what one Ray Data task (or one iteration
of a plain loop, as in the benchmark) does with one case.

Pass 1 (``inspect_case``) reads, validates and measures a case; the driver splits the usable
cases by patient (``assign_rows``) and reduces the training histograms to z-score statistics;
pass 2 (``case_slices``) turns a case into 2.5-D slice rows and ``normalise_volumes`` turns
pass 1's fixed grids into V-Net volume rows. None of them raises for a bad case.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import pyarrow as pa

from livseg.config import from_dict
from livseg.data.config import PreprocessConfig
from livseg.data.roi import roi_arrays
from livseg.data.shards import encode_tensors
from livseg.data.transforms import (
    IntensityStats,
    liver_histogram,
    select_slices,
    slice_samples,
    volume_grid,
    zscore,
)
from livseg.errors import describe_error
from livseg.io import INDEX_COLUMNS, Case, VolumeError, assign_splits, read_case, storage

log = logging.getLogger(__name__)


def inspect_case(row: dict[str, Any], cfg_dict: dict[str, Any]) -> dict[str, Any]:
    """Pass 1 for one case (a Ray Data ``map`` function): load, validate, measure.

    Never raises: a bad case comes back with ``status="error"`` and a message naming the file.
    """
    cfg = from_dict(PreprocessConfig, cfg_dict)
    low, high = cfg.window
    out = dict(row)
    out.update(shape=[0, 0, 0], spacing=[0.0, 0.0, 0.0], liver_voxels=0, tumour_voxels=0)
    out.update(status="ok", error="", histogram=np.zeros(int(np.ceil(high - low)) + 1, np.int64))
    out.update(
        grid_hu=np.zeros(cfg.volume_size, np.float32), grid_mask=np.zeros(cfg.volume_size, np.uint8)
    )
    try:
        mask_uri = row["mask_uri"] or None
        volume, labels = read_case(row["image_uri"], mask_uri)
        if labels is None:
            raise VolumeError(f"{row['image_uri']}: no segmentation-{row['case_id']} mask found")
        counts = np.bincount(labels.ravel(), minlength=256)
        unexpected = (np.flatnonzero(counts[3:]) + 3).tolist()
        if unexpected:
            raise VolumeError(f"{mask_uri}: labels {unexpected} found; expected 0/1/2 (LiTS)")
        # The liver lies wholly inside its box: the crop's liver histogram is the case's, with
        # the HU the rows are made of (shifted for ROI shards).
        hu, kept_labels = case_arrays(volume.array, labels, cfg)
        grid_hu, grid_mask = volume_grid(hu, kept_labels, cfg)
        # The split groups cases by patient: a given table first, else the DICOM PatientID.
        out["patient"] = row["patient"] or volume.meta.get("patient") or f"case-{row['case_id']}"
        out.update(
            shape=list(volume.array.shape),
            spacing=list(volume.spacing),
            liver_voxels=int(counts[1:3].sum()),
            tumour_voxels=int(counts[2]),
            histogram=liver_histogram(hu, kept_labels, low, high),
            grid_hu=grid_hu,
            grid_mask=grid_mask,
        )
    except Exception as exc:  # noqa: BLE001 - one bad case must never stop the batch
        out.update(status="error", error=describe_error(exc))
    return out


def case_arrays(hu: np.ndarray, labels: np.ndarray, cfg: PreprocessConfig) -> tuple:
    """The (X, Y, Z) arrays a case's rows are made from: whole, or its liver box (``cfg.roi``)."""
    if not cfg.roi:
        return hu, labels
    return roi_arrays(hu, labels, cfg.roi_margin, cfg.roi_z_margin, cfg.roi_liver_shift)


def case_slices(
    batch: dict[str, np.ndarray],
    cfg_dict: dict[str, Any],
    stats_dict: dict[str, Any],
    failures_uri: str,
) -> pa.Table:
    """Pass 2 (a ``map_batches`` function, one case per batch) → one row per kept slice.

    A case that fails here (it passed pass 1: a flaky read, a file replaced meanwhile) gives no
    rows and leaves ``<failures_uri>/case-<id>.json`` with the reason, which the driver turns
    into a failed index row.
    """
    cfg = from_dict(PreprocessConfig, cfg_dict)
    stats = IntensityStats(**stats_dict)
    parts = []
    for i in range(len(batch["case_id"])):
        case_id = int(batch["case_id"][i])
        try:
            volume, labels = read_case(str(batch["image_uri"][i]), str(batch["mask_uri"][i]))
            hu, labels = case_arrays(volume.array, labels, cfg)
            rng = np.random.default_rng([cfg.seed, case_id])
            # Validation and test cases keep every slice so per-case 3-D scores are exact.
            fraction = cfg.other_fraction if batch["split"][i] == "train" else 1.0
            kept = select_slices(labels, cfg.margin, fraction, rng)
            sample = slice_samples(hu, labels, kept, cfg, stats)
        except Exception as exc:  # noqa: BLE001 - passed pass 1; a flaky read must not kill all
            log.warning("case %s failed in pass 2: %s", case_id, describe_error(exc))
            failure = {"case_id": case_id, "error": f"second pass: {describe_error(exc)}"}
            storage.write_text(
                storage.join(failures_uri, f"case-{case_id}.json"), json.dumps(failure)
            )
            continue
        sample["case_id"] = np.full(len(kept), case_id, np.int64)
        sample["split"] = np.full(len(kept), str(batch["split"][i]))
        parts.append(sample)
    if not parts:
        empty = slice_samples(np.zeros((cfg.size, cfg.size, 1), np.float32), None, [], cfg, stats)
        empty["case_id"] = np.zeros(0, np.int64)
        empty["split"] = np.zeros(0, dtype=str)
        parts.append(empty)
    out = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    out["has_liver"] = (out["mask"] > 0).any(axis=(1, 2))
    out["has_tumour"] = (out["mask"] == 2).any(axis=(1, 2))
    return encode_tensors(out)


def normalise_volumes(
    batch: dict[str, np.ndarray], stats_dict: dict[str, Any], splits: dict[int, str]
) -> pa.Table:
    """Pass-1 grids of usable cases → volume rows with their split: ``image`` (N, 1, X, Y, Z)
    float16, ``mask`` (N, X, Y, Z); cases missing from ``splits`` (failed ones) are dropped."""
    stats = IntensityStats(**stats_dict)
    keep = np.array([int(c) in splits for c in batch["case_id"]], bool)
    image = zscore(batch["grid_hu"][keep], stats.mean, stats.std)[:, None].astype(np.float16)
    case_ids = batch["case_id"][keep]
    return encode_tensors(
        {
            "case_id": case_ids,
            "image": image,
            "mask": batch["grid_mask"][keep],
            "split": np.array([splits[int(c)] for c in case_ids], dtype=str),
        }
    )


def case_item(case: Case) -> dict[str, Any]:
    """The row that pass 1 starts from: the case's index columns, patient and URIs."""
    item = {name: getattr(case, name) for name in INDEX_COLUMNS[:5]}
    item.update(split="", patient=case.patient, image_uri=case.image_uri)
    item["mask_uri"] = case.mask_uri or ""
    return item


def split_warnings(rows: list[dict[str, Any]]) -> list[str]:
    """What looks wrong with the patient grouping of the usable ``rows`` (after
    ``assign_rows``): anonymised exports often give every series one PatientID ("ANON")."""
    patients = [r["patient"] for r in rows if r["status"] == "ok"]
    if len(patients) < 4:
        return []
    top = max(set(patients), key=patients.count)
    if patients.count(top) * 2 <= len(patients):
        return []
    return [
        f"one patient ({top}) holds {patients.count(top)} of {len(patients)} usable cases, so "
        "they all share one split; if the PatientIDs were anonymised to one value, give a "
        "case → patient table (--set patients=FILE.csv)"
    ]


def assign_rows(rows: list[dict[str, Any]], cfg: PreprocessConfig) -> None:
    """Split the usable cases by patient (a broken case must not take a split's only slot)."""
    usable = [r["patient"] for r in rows if r["status"] == "ok"]
    splits = assign_splits(usable, cfg.split, cfg.seed)
    for row in rows:
        row["split"] = splits.get(row["patient"], "") if row["status"] == "ok" else ""
