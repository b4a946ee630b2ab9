"""``Volume``: a 3-D CT or mask held in canonical RAS+ orientation, and the way back.

Every volume is held in the canonical RAS+ orientation (array axes x→Right, y→Anterior,
z→Superior, so ``array[:, :, k]`` is an axial slice) and remembers the grid it came from, so a
mask predicted on the canonical array is written back on the input's exact shape and affine.
Readers (``nifti``, ``dicom``) raise ``VolumeError`` naming the file and what is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from nibabel import orientations as nio

from livseg.errors import UsageError

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
AXIS_TOLERANCE, ORIGIN_TOLERANCE = 1e-4, 0.05  # in voxels; see same_grid


class VolumeError(UsageError):
    """An input file is not a usable CT volume or mask; the message names the file."""


class VolumeTooLarge(VolumeError):
    """A volume beyond a configured size limit (bytes or voxels)."""


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


def same_grid(a: Volume, b: Volume) -> bool:
    """True when two canonical volumes cover the same voxels: same shape, voxel axes equal to
    within ``AXIS_TOLERANCE`` of a voxel per voxel (0.05 voxel across 512), origins to within
    ``ORIGIN_TOLERANCE`` of a voxel. Headers re-saved by other tools (float32 quaternions, DS
    strings) differ far less; a mask shifted or resampled differs far more."""
    if a.array.shape != b.array.shape:
        return False
    step = min(a.spacing)
    axes = np.abs(a.affine[:3, :3] - b.affine[:3, :3]).max()
    origin = np.abs(a.affine[:3, 3] - b.affine[:3, 3]).max()
    return bool(axes <= AXIS_TOLERANCE * step and origin <= ORIGIN_TOLERANCE * step)


def describe_grid(volume: Volume) -> str:
    """``"512×512×80 voxels of 0.7×0.7×2.5 mm, origin (-180.0, -170.2, 30.0) mm, LPS"``."""
    shape = "×".join(str(s) for s in volume.source_shape)
    spacing = "×".join(f"{s:.3g}" for s in volume.spacing)
    origin = ", ".join(f"{v:.1f}" for v in volume.source_affine[:3, 3])
    codes = "".join(nio.aff2axcodes(volume.source_affine))
    return f"{shape} voxels of {spacing} mm, origin ({origin}) mm, {codes}"


def to_source_grid(array: np.ndarray, like: Volume) -> np.ndarray:
    """Undo ``to_canonical``: put a canonical (X, Y, Z) array back on ``like``'s source grid."""
    if array.shape != like.array.shape:
        raise ValueError(f"mask shape {array.shape} does not match volume {like.array.shape}")
    identity = nio.axcodes2ornt(("R", "A", "S"))
    back = nio.ornt_transform(identity, like.source_ornt)
    return np.ascontiguousarray(nio.apply_orientation(array, back))
