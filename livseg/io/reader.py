"""One entry point for readers: a NIfTI file or a DICOM folder, and a CT with its mask."""

from __future__ import annotations

import logging

import numpy as np
from nibabel import orientations as nio

from livseg.io import storage
from livseg.io.dicom import read_dicom_files
from livseg.io.nifti import NIFTI_SUFFIXES, read_nifti
from livseg.io.volume import Volume, VolumeError, describe_grid, same_grid, to_source_grid

log = logging.getLogger(__name__)


def read_volume(uri: str, *, labels: bool = False, max_voxels: int | None = None) -> Volume:
    """Read a NIfTI file or a DICOM series folder, whichever ``uri`` names; ``max_voxels``
    refuses larger volumes (``VolumeTooLarge``) before their voxels are decoded."""
    if storage.is_dir(uri):
        if labels:
            raise VolumeError(f"{uri}: masks are read from NIfTI files, not DICOM folders")
        return read_dicom_files(storage.list_files(uri), uri, max_voxels=max_voxels)
    if str(uri).lower().endswith(NIFTI_SUFFIXES):
        return read_nifti(uri, labels=labels, max_voxels=max_voxels)
    if not storage.exists(uri):
        raise VolumeError(f"{uri}: file not found")
    raise VolumeError(f"{uri}: unknown volume format; expected .nii, .nii.gz or a DICOM folder")


def read_case(image_uri: str, mask_uri: str | None) -> tuple[Volume, np.ndarray | None]:
    """Read a CT volume and, when given, its label mask on the same canonical grid
    (:func:`align_labels`). Returns (volume, labels (X, Y, Z) uint8 or None)."""
    volume = read_volume(image_uri)
    if mask_uri is None:
        return volume, None
    return volume, align_labels(read_nifti(mask_uri, labels=True), volume)


def align_labels(mask: Volume, like: Volume) -> np.ndarray:
    """``mask``'s labels on ``like``'s canonical grid: the one rule for training masks
    (``read_case``) and for scored predictions (``--pred/--ref``).

    Both headers are honoured: each file was brought to canonical RAS+ with its own affine, so
    a mask stored in another voxel order (axes permuted or flipped) lines up. A mask on another
    grid (origin, spacing, shape) is refused naming both files. A mask whose header sets neither
    qform nor sform records no grid at all: it is taken to share ``like``'s voxel order when the
    shapes match (with a warning).
    """
    if not mask.meta.get("oriented", True) and mask.source_shape == like.source_shape:
        log.warning(
            "%s: no qform/sform in its header; assuming %s's grid", mask.source, like.source
        )
        raw = to_source_grid(mask.array, mask)  # the file's own voxel order
        return np.ascontiguousarray(nio.apply_orientation(raw, like.source_ornt))
    if not same_grid(like, mask):
        raise VolumeError(
            f"{mask.source} ({describe_grid(mask)}) is not on the voxel grid of {like.source} "
            f"({describe_grid(like)}); resample it onto that grid"
        )
    return mask.array
