"""Request bodies to volumes and masks to response bodies, with an HTTP status for each way a
body can be wrong (400 undecodable, 413 too large, 422 not a 3-D CT volume)."""

from __future__ import annotations

from livseg.io import (
    Volume,
    VolumeError,
    VolumeTooLarge,
    decode_nifti,
    mask_nifti_bytes,
    nifti_volume,
)

BODY = "request body"


class RequestError(Exception):
    """A request the app refuses, with its HTTP status and a message for the caller."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status
        self.detail = detail


def volume_from_body(data: bytes, max_bytes: int, max_voxels: int) -> Volume:
    """A ``.nii`` or ``.nii.gz`` request body → a canonical ``Volume`` (``RequestError`` when not
    usable). Decompressed data and voxel counts are bounded before anything large is made."""
    try:
        image = decode_nifti(data, BODY, max_bytes=max_bytes)
    except VolumeTooLarge as exc:
        raise RequestError(413, str(exc)) from exc
    except VolumeError as exc:
        raise RequestError(400, str(exc)) from exc
    try:
        return nifti_volume(image, BODY, max_voxels=max_voxels)
    except VolumeTooLarge as exc:
        raise RequestError(413, str(exc)) from exc
    except VolumeError as exc:
        raise RequestError(422, str(exc)) from exc


def mask_body(labels, like: Volume) -> bytes:
    """A canonical (X, Y, Z) uint8 mask as ``.nii.gz`` bytes on ``like``'s exact source grid."""
    return mask_nifti_bytes(labels, like, compress=True)
