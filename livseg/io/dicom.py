"""DICOM CT series (a folder or a list of files, local or ``s3://``) into a canonical
``Volume``."""

from __future__ import annotations

import hashlib
import io

import numpy as np

from livseg.io import storage
from livseg.io.cases import patient_key
from livseg.io.nifti import check_shape
from livseg.io.volume import LPS_TO_RAS, Volume, VolumeError, VolumeTooLarge, to_canonical

MAX_TILT_DEGREES = 0.5  # above this a series needs resampling we do not do silently
SPACING_TOLERANCE = 0.05  # relative deviation of one slice gap from the median gap


def _dicom_datasets(files: list[tuple[str, int]], uri: str) -> list:
    import pydicom  # local import: only DICOM users pay for it
    from pydicom.errors import InvalidDicomError

    datasets = []
    for file_uri, size in files:
        if size == 0:
            continue
        try:
            ds = pydicom.dcmread(io.BytesIO(storage.read_bytes(file_uri)))
        except (InvalidDicomError, EOFError, OSError, ValueError, TypeError):
            continue  # DICOMDIR, notes or stray files are not slices
        if "PixelData" in ds and "ImagePositionPatient" in ds:
            datasets.append((file_uri, ds))
    if not datasets:
        raise VolumeError(f"{uri}: no DICOM image slices found")
    series = {str(ds.get("SeriesInstanceUID", "")) for _, ds in datasets}
    if len(series) > 1:
        raise VolumeError(f"{uri}: {len(series)} DICOM series mixed; give one series per volume")
    return datasets


def _slice_geometry(datasets: list, uri: str) -> tuple[np.ndarray, np.ndarray, float]:
    """Return (sorted datasets, row/col directions (2, 3), slice gap in mm) with checks."""
    iops = np.array([[float(v) for v in ds.ImageOrientationPatient] for _, ds in datasets])
    if np.abs(iops - iops[0]).max() > 1e-4:
        raise VolumeError(f"{uri}: slices have different ImageOrientationPatient; not one stack")
    row_dir, col_dir = iops[0, :3], iops[0, 3:]
    normal = np.cross(row_dir, col_dir)
    positions = np.array([[float(v) for v in ds.ImagePositionPatient] for _, ds in datasets])
    along = positions @ normal
    order = np.argsort(along)
    along, positions = along[order], positions[order]
    gaps = np.diff(along)
    if len(datasets) > 1 and gaps.min() < 1e-3:
        raise VolumeError(f"{uri}: two or more slices share one position; duplicate files?")
    gap = float(np.median(gaps)) if len(gaps) else float(datasets[0][1].get("SliceThickness", 1))
    if len(gaps) and np.abs(gaps - gap).max() > SPACING_TOLERANCE * gap + 0.01:
        missing = int(np.sum(np.rint(gaps / gap) - 1))
        if missing > 0 and np.allclose(gaps / gap, np.rint(gaps / gap), atol=0.1):
            raise VolumeError(f"{uri}: {missing} slice(s) missing from the series (gaps in z)")
        raise VolumeError(
            f"{uri}: uneven slice spacing ({gaps.min():.2f}–{gaps.max():.2f} mm); resample first"
        )
    if len(positions) > 1:
        step = positions[-1] - positions[0]
        cos = abs(step @ normal) / np.linalg.norm(step)
        tilt = float(np.degrees(np.arccos(min(1.0, cos))))
        if tilt > MAX_TILT_DEGREES:
            raise VolumeError(
                f"{uri}: gantry tilt of {tilt:.1f}° (slices are sheared); resample the series "
                "to an orthogonal grid first"
            )
    return order, np.stack([row_dir, col_dir]), gap


def read_dicom_series(uri: str) -> Volume:
    """Read a folder holding one CT series (local or ``s3://``) into a canonical ``Volume``.

    Slices are sorted by their position along the slice normal (not by file name) and rescaled
    to HU with RescaleSlope/RescaleIntercept.
    """
    return read_dicom_files(storage.list_files(uri), uri)


def read_dicom_files(
    files: list[tuple[str, int]], uri: str, *, max_voxels: int | None = None
) -> Volume:
    """Read the files ``(uri, size)`` of one CT series, wherever they lie, into a ``Volume``
    named ``uri`` (a PACS export mixes series in one folder and splits one across folders).
    ``max_voxels`` refuses larger series (``VolumeTooLarge``) before any pixel is decoded."""
    datasets = _dicom_datasets(files, uri)
    voxels = sum(int(ds.Rows) * int(ds.Columns) for _, ds in datasets)
    if max_voxels is not None and voxels > max_voxels:
        raise VolumeTooLarge(f"{uri}: {voxels:,} voxels is more than the {max_voxels:,} allowed")
    order, dirs, gap = _slice_geometry(datasets, uri)
    ordered = [datasets[i][1] for i in order]
    first = ordered[0]
    shapes = {(int(ds.Rows), int(ds.Columns)) for ds in ordered}
    if len(shapes) > 1:
        raise VolumeError(f"{uri}: slices have different sizes {sorted(shapes)}")
    try:
        slices = [
            ds.pixel_array.astype(np.float32) * float(ds.get("RescaleSlope", 1))
            + float(ds.get("RescaleIntercept", 0))
            for ds in ordered
        ]
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for pixel data
        raise VolumeError(f"{uri}: cannot decode pixel data ({exc})") from exc
    # pixel (row r, column c) of slice k → array[c, r, k]; see DICOM PS3.3 C.7.6.2.1.1.
    array = np.stack(slices, axis=-1).transpose(1, 0, 2)
    row_spacing, col_spacing = (float(v) for v in first.PixelSpacing)
    normal = np.cross(dirs[0], dirs[1])
    lps = np.eye(4)
    lps[:3, 0] = dirs[0] * col_spacing
    lps[:3, 1] = dirs[1] * row_spacing
    lps[:3, 2] = normal * gap
    lps[:3, 3] = [float(v) for v in first.ImagePositionPatient]
    affine = LPS_TO_RAS @ lps
    check_shape(array.shape, uri)
    canonical, canon_affine, _ = to_canonical(array, affine)
    patient = str(first.get("PatientID", "")).strip()
    meta = {
        "format": "dicom",
        "slices": len(ordered),
        # Identifiers travel only as one-way hashes (grouping cases by patient for the split).
        "patient": patient_key(patient) if patient else "",
        "series_hash": hashlib.sha256(str(first.SeriesInstanceUID).encode()).hexdigest()[:16],
        "files": [datasets[i][0] for i in order],  # slice order, for a DICOM SEG
    }
    return Volume(canonical, canon_affine, tuple(array.shape), affine, uri, meta)
