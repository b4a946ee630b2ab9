"""NIfTI-1/2 files (local or ``s3://``): decode with clear errors, read into a ``Volume``,
encode and write masks on a volume's source grid."""

from __future__ import annotations

import gzip
import io
import zlib

import nibabel as nib
import numpy as np

from livseg.io import storage
from livseg.io.volume import Volume, VolumeError, VolumeTooLarge, to_canonical, to_source_grid

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def _gunzip(data: bytes, name: str, max_bytes: int | None) -> bytes:
    """Decompress gzip data, stopping at ``max_bytes`` (a small upload must not inflate into
    gigabytes before anyone looks at its header)."""
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
            out = stream.read(-1 if max_bytes is None else max_bytes + 1)
    except (EOFError, OSError, zlib.error) as exc:
        raise VolumeError(
            f"{name}: truncated or corrupt gzip data ({exc}); copy or export the file again"
        ) from exc
    if max_bytes is not None and len(out) > max_bytes:
        raise VolumeTooLarge(f"{name}: more than {max_bytes / 2**20:.0f} MiB once decompressed")
    return out


def decode_nifti(
    data: bytes, name: str, *, max_bytes: int | None = None
) -> nib.spatialimages.SpatialImage:
    """NIfTI-1/2 bytes (``.nii`` or gzipped ``.nii.gz``) → a nibabel image; voxel data stays
    undecoded until :func:`image_array`. ``VolumeError`` naming ``name`` when unreadable."""
    if not data:
        raise VolumeError(f"{name}: empty file (0 bytes); expected a NIfTI volume")
    if data[:2] == b"\x1f\x8b":
        data = _gunzip(data, name, max_bytes)
    for cls in (nib.Nifti1Image, nib.Nifti2Image):
        try:
            return cls.from_bytes(data)
        except Exception:  # noqa: BLE001 - try the next NIfTI flavour, report below
            continue
    raise VolumeError(f"{name}: not a NIfTI-1/2 file (no valid header); expected .nii/.nii.gz CT")


def check_shape(shape: tuple[int, ...], name: str) -> tuple[int, int, int]:
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


def image_array(
    img: nib.spatialimages.SpatialImage, name: str, labels: bool, max_voxels: int | None = None
) -> tuple[np.ndarray, np.ndarray, dict]:
    """(array on the file's own grid, affine, facts) of a decoded image; HU float32 or uint8
    labels. The shape (3-D, at most ``max_voxels``) and affine are checked before the voxels
    are read.

    Facts: ``dtype`` on disk, ``oriented`` (False when neither qform nor sform is set: the
    file records no position, and nibabel's affine is a guess).
    """
    shape = check_shape(tuple(int(s) for s in img.shape), name)
    if max_voxels is not None and int(np.prod(shape)) > max_voxels:
        raise VolumeTooLarge(
            f"{name}: {'×'.join(map(str, shape))} voxels is more than the {max_voxels:,} allowed"
        )
    affine = np.asarray(img.affine, dtype=np.float64)
    _check_affine(affine, name)
    stored = img.get_data_dtype()
    if stored.kind not in "biuf" or stored.fields is not None:  # RGB, complex, structured
        raise VolumeError(f"{name}: voxel type {stored} is not a CT intensity; expected a "
                          "scalar integer or float image")  # fmt: skip
    try:
        raw = np.asanyarray(img.dataobj).reshape(shape)  # scl_slope/scl_inter applied
    except (ValueError, OSError, EOFError, zlib.error) as exc:
        raise VolumeError(f"{name}: voxel data is truncated or unreadable ({exc})") from exc
    if raw.dtype.kind == "f" and not np.isfinite(raw).all():
        bad = int((~np.isfinite(raw)).sum())
        raise VolumeError(f"{name}: {bad} voxels are NaN or infinite; expected finite values")
    array = _as_labels(raw, name) if labels else raw.astype(np.float32, copy=False)
    header = img.header
    oriented = bool(header["qform_code"] > 0 or header["sform_code"] > 0)
    facts = {"dtype": str(img.get_data_dtype()), "oriented": oriented}
    both = header["qform_code"] > 0 and header["sform_code"] > 0
    if isinstance(header, nib.Nifti1Header) and both:
        (qform, qcode), (sform, scode) = header.get_qform(coded=True), header.get_sform(coded=True)
        if not np.allclose(qform, sform, atol=1e-4):  # kept, so that a mask keeps both
            facts["forms"] = ((qform.tolist(), int(qcode)), (sform.tolist(), int(scode)))
    return array, affine, facts


def read_nifti_source(
    uri: str, labels: bool, max_voxels: int | None = None
) -> tuple[np.ndarray, np.ndarray, dict]:
    """:func:`image_array` of the file at ``uri`` (local or ``s3://``)."""
    try:
        data = storage.read_bytes(uri)
    except FileNotFoundError as exc:
        raise VolumeError(f"{uri}: file not found") from exc
    limit = None if max_voxels is None else max_voxels * 8 + (1 << 20)  # float64 + header
    return image_array(decode_nifti(data, uri, max_bytes=limit), uri, labels, max_voxels)


def nifti_volume(
    img: nib.spatialimages.SpatialImage, name: str, *, max_voxels: int | None = None
) -> Volume:
    """A decoded CT image (e.g. an HTTP upload) as a canonical ``Volume`` named ``name``."""
    array, affine, facts = image_array(img, name, False, max_voxels)
    canonical, canon_affine, _ = to_canonical(array, affine)
    return Volume(canonical, canon_affine, tuple(array.shape), affine, name,
                  {"format": "nifti", **facts})  # fmt: skip


def read_nifti(uri: str, *, labels: bool = False, max_voxels: int | None = None) -> Volume:
    """Read a ``.nii``/``.nii.gz`` file (local or ``s3://``) into a canonical ``Volume``.

    CT data is returned in HU as float32 with the header's ``scl_slope``/``scl_inter`` applied;
    label masks (``labels=True``) are rounded to uint8.
    """
    array, affine, facts = read_nifti_source(uri, labels, max_voxels)
    canonical, canon_affine, _ = to_canonical(array, affine)
    meta = {"format": "nifti", **facts}
    return Volume(canonical, canon_affine, tuple(array.shape), affine, uri, meta)


def _as_labels(raw: np.ndarray, name: str) -> np.ndarray:
    """Label values as uint8; min/max checks instead of ``np.unique`` (a 512²×800 sort is slow)."""
    values = raw if raw.dtype.kind in "iub" else np.rint(raw)
    low, high = values.min(), values.max()
    if low < 0 or high > 255:
        raise VolumeError(f"{name}: mask values span {low}..{high}; expected labels 0..255")
    return values.astype(np.uint8, copy=False)


def nifti_bytes(
    array: np.ndarray, affine: np.ndarray, *, compress: bool = True, forms: tuple | None = None
) -> bytes:
    """Encode an array as NIfTI-1 bytes with qform/sform set to scanner coordinates, or to
    ``forms`` ((qform, code), (sform, code)) copied from a source whose two forms differ. Gzip's
    header carries no time stamp, so equal masks give equal bytes (checksums compare runs)."""
    img = nib.Nifti1Image(array, affine)
    (qform, qcode), (sform, scode) = forms or ((affine, 1), (affine, 1))
    img.set_qform(np.asarray(qform), code=qcode)
    img.set_sform(np.asarray(sform), code=scode)
    data = img.to_bytes()
    return gzip.compress(data, compresslevel=6, mtime=0) if compress else data


def write_mask(mask: np.ndarray, like: Volume, uri: str) -> None:
    """Write a canonical (X, Y, Z) uint8 mask as NIfTI on ``like``'s exact source grid."""
    storage.write_bytes(uri, mask_nifti_bytes(mask, like, compress=str(uri).endswith(".gz")))


def mask_nifti_bytes(mask: np.ndarray, like: Volume, *, compress: bool = True) -> bytes:
    """A canonical (X, Y, Z) mask as NIfTI bytes on ``like``'s exact source grid: same shape,
    voxel order and affine; a source whose qform and sform differ keeps both, with their codes
    (a viewer that prefers either one places the mask where it places the CT)."""
    source = to_source_grid(mask.astype(np.uint8), like)
    return nifti_bytes(source, like.source_affine, compress=compress,
                       forms=like.meta.get("forms"))  # fmt: skip
