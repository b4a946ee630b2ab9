"""Read NIfTI files and DICOM series into one in-memory ``Volume``; write masks back.

Every volume is held in the canonical RAS+ orientation (array axes x→Right, y→Anterior,
z→Superior, so ``array[:, :, k]`` is an axial slice) and remembers the grid it came from, so a
mask predicted on the canonical array is written back on the input's exact shape and affine.
Errors name the file and say what is wrong (``VolumeError``, a ``ValueError``).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import zlib
from dataclasses import dataclass, field

import nibabel as nib
import numpy as np
from nibabel import orientations as nio

from livseg import storage

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
NIFTI_SUFFIXES = (".nii", ".nii.gz")
MAX_TILT_DEGREES = 0.5  # above this a series needs resampling we do not do silently
SPACING_TOLERANCE = 0.05  # relative deviation of one slice gap from the median gap


class VolumeError(ValueError):
    """An input file is not a usable CT volume or mask; the message names the file."""


@dataclass(frozen=True)
class Volume:
    """A 3-D volume in canonical RAS+ orientation plus the grid it was read from.

    ``array``: shape (X, Y, Z), float32 HU for CT, uint8 for label masks.
    ``affine``: (4, 4) voxel → RAS mm of ``array``.
    ``source_shape`` / ``source_affine``: the grid of the file or series on disk.
    """

    array: np.ndarray
    affine: np.ndarray
    source_shape: tuple[int, ...]
    source_affine: np.ndarray
    source: str
    meta: dict = field(default_factory=dict)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along (X, Y, Z) of ``array``."""
        return tuple(float(s) for s in np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0)))

    @property
    def source_ornt(self) -> np.ndarray:
        return nio.io_orientation(self.source_affine)


def to_canonical(
    array: np.ndarray, affine: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reorient ``array`` (X, Y, Z) to the closest RAS+ axes; return (array, affine, ornt)."""
    ornt = nio.io_orientation(affine)
    # A strided view, not a copy: slices are copied one at a time where they are used.
    canonical = nio.apply_orientation(array, ornt)
    new_affine = affine @ nio.inv_ornt_aff(ornt, array.shape)
    return canonical, new_affine, ornt


def to_source_grid(array: np.ndarray, like: Volume) -> np.ndarray:
    """Undo ``to_canonical``: put a canonical (X, Y, Z) array back on ``like``'s source grid."""
    if array.shape != like.array.shape:
        raise ValueError(f"mask shape {array.shape} does not match volume {like.array.shape}")
    identity = nio.axcodes2ornt(("R", "A", "S"))
    back = nio.ornt_transform(identity, like.source_ornt)
    return np.ascontiguousarray(nio.apply_orientation(array, back))


def _decode_nifti(data: bytes, name: str) -> nib.spatialimages.SpatialImage:
    if not data:
        raise VolumeError(f"{name}: empty file (0 bytes); expected a NIfTI volume")
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (EOFError, OSError, zlib.error) as exc:
            raise VolumeError(
                f"{name}: truncated or corrupt gzip data ({exc}); copy or export the file again"
            ) from exc
    for cls in (nib.Nifti1Image, nib.Nifti2Image):
        try:
            return cls.from_bytes(data)
        except Exception:  # noqa: BLE001 - try the next NIfTI flavour, report below
            continue
    raise VolumeError(f"{name}: not a NIfTI-1/2 file (no valid header); expected .nii/.nii.gz CT")


def _check_shape(shape: tuple[int, ...], name: str) -> tuple[int, int, int]:
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        kind = f"{len(shape)}-D image {tuple(shape)}"
        raise VolumeError(f"{name}: {kind}; expected a 3-D CT volume")
    if min(shape) < 1 or (shape[0] < 8 or shape[1] < 8):
        raise VolumeError(f"{name}: image of shape {tuple(shape)} is too small to be a CT volume")
    return shape  # type: ignore[return-value]


def _check_affine(affine: np.ndarray, name: str) -> None:
    det = np.linalg.det(affine[:3, :3]) if np.all(np.isfinite(affine)) else 0.0
    if not abs(det) > 1e-6:
        raise VolumeError(f"{name}: header has a singular or non-finite affine; fix the header")


def _read_nifti_source(uri: str, labels: bool) -> tuple[np.ndarray, np.ndarray, str]:
    """(array on the file's own grid, affine, on-disk dtype); HU float32 or uint8 labels."""
    try:
        data = storage.read_bytes(uri)
    except FileNotFoundError as exc:
        raise VolumeError(f"{uri}: file not found") from exc
    img = _decode_nifti(data, uri)
    shape = _check_shape(tuple(int(s) for s in img.shape), uri)
    affine = np.asarray(img.affine, dtype=np.float64)
    _check_affine(affine, uri)
    try:
        raw = np.asanyarray(img.dataobj).reshape(shape)  # scl_slope/scl_inter applied
    except (ValueError, OSError, EOFError, zlib.error) as exc:
        raise VolumeError(f"{uri}: voxel data is truncated or unreadable ({exc})") from exc
    if raw.dtype.kind == "f" and not np.isfinite(raw).all():
        bad = int((~np.isfinite(raw)).sum())
        raise VolumeError(f"{uri}: {bad} voxels are NaN or infinite; expected finite values")
    array = _as_labels(raw, uri) if labels else raw.astype(np.float32, copy=False)
    return array, affine, str(img.get_data_dtype())


def read_nifti(uri: str, *, labels: bool = False) -> Volume:
    """Read a ``.nii``/``.nii.gz`` file (local or ``s3://``) into a canonical ``Volume``.

    CT data is returned in HU as float32 with the header's ``scl_slope``/``scl_inter`` applied;
    label masks (``labels=True``) are rounded to uint8.
    """
    array, affine, dtype = _read_nifti_source(uri, labels)
    canonical, canon_affine, _ = to_canonical(array, affine)
    meta = {"format": "nifti", "dtype": dtype}
    return Volume(canonical, canon_affine, tuple(array.shape), affine, uri, meta)


def _as_labels(raw: np.ndarray, name: str) -> np.ndarray:
    """Label values as uint8; min/max checks instead of ``np.unique`` (a 512²×800 sort is slow)."""
    values = raw if raw.dtype.kind in "iub" else np.rint(raw)
    low, high = values.min(), values.max()
    if low < 0 or high > 255:
        raise VolumeError(f"{name}: mask values span {low}..{high}; expected labels 0..255")
    return values.astype(np.uint8, copy=False)


def _dicom_datasets(uri: str) -> list:
    import pydicom  # local import: only DICOM users pay for it
    from pydicom.errors import InvalidDicomError

    datasets = []
    for file_uri, size in storage.list_files(uri):
        if size == 0:
            continue
        try:
            ds = pydicom.dcmread(io.BytesIO(storage.read_bytes(file_uri)))
        except (InvalidDicomError, EOFError, OSError, ValueError, TypeError):
            continue  # DICOMDIR, notes or stray files are not slices
        if "PixelData" in ds and "ImagePositionPatient" in ds:
            datasets.append((file_uri, ds))
    if not datasets:
        raise VolumeError(f"{uri}: no DICOM image slices found in the folder")
    series = {str(ds.get("SeriesInstanceUID", "")) for _, ds in datasets}
    if len(series) > 1:
        raise VolumeError(
            f"{uri}: folder mixes {len(series)} DICOM series; give one series folder per volume"
        )
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
    datasets = _dicom_datasets(uri)
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
    _check_shape(array.shape, uri)
    canonical, canon_affine, _ = to_canonical(array, affine)
    patient = str(first.get("PatientID", ""))
    meta = {
        "format": "dicom",
        "slices": len(ordered),
        # Identifiers travel only as one-way hashes (grouping cases by patient for the split).
        "patient_hash": hashlib.sha256(patient.encode()).hexdigest()[:16] if patient else "",
        "series_hash": hashlib.sha256(str(first.SeriesInstanceUID).encode()).hexdigest()[:16],
    }
    return Volume(canonical, canon_affine, tuple(array.shape), affine, uri, meta)


def read_volume(uri: str, *, labels: bool = False) -> Volume:
    """Read a NIfTI file or a DICOM series folder, whichever ``uri`` names."""
    if storage.is_dir(uri):
        if labels:
            raise VolumeError(f"{uri}: masks are read from NIfTI files, not DICOM folders")
        return read_dicom_series(uri)
    if str(uri).lower().endswith(NIFTI_SUFFIXES):
        return read_nifti(uri, labels=labels)
    if not storage.exists(uri):
        raise VolumeError(f"{uri}: file not found")
    raise VolumeError(f"{uri}: unknown volume format; expected .nii, .nii.gz or a DICOM folder")


def read_case(image_uri: str, mask_uri: str | None) -> tuple[Volume, np.ndarray | None]:
    """Read a CT volume and, when given, its label mask on the same canonical grid.

    The mask must have the image's voxel grid (same shape); it is reoriented with the image's
    orientation so voxels correspond even when a mask header differs slightly.
    Returns (volume, labels) with labels uint8 (X, Y, Z) or None.
    """
    volume = read_volume(image_uri)
    if mask_uri is None:
        return volume, None
    raw, _, _ = _read_nifti_source(mask_uri, labels=True)
    if raw.shape != volume.source_shape:
        raise VolumeError(
            f"{mask_uri}: mask shape {raw.shape} differs from image "
            f"{image_uri} shape {volume.source_shape}"
        )
    return volume, nio.apply_orientation(raw, volume.source_ornt)


def nifti_bytes(array: np.ndarray, affine: np.ndarray, *, compress: bool = True) -> bytes:
    """Encode an array as NIfTI-1 bytes with qform/sform set to scanner coordinates."""
    img = nib.Nifti1Image(array, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    data = img.to_bytes()
    return gzip.compress(data, compresslevel=6) if compress else data


def write_mask(mask: np.ndarray, like: Volume, uri: str) -> None:
    """Write a canonical (X, Y, Z) uint8 mask as NIfTI on ``like``'s exact source grid."""
    source = to_source_grid(mask.astype(np.uint8), like)
    data = nifti_bytes(source, like.source_affine, compress=str(uri).endswith(".gz"))
    storage.write_bytes(uri, data)
