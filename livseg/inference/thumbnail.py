"""A review thumbnail: the axial slice with the most tumour (else the most liver) in a soft-tissue
window, with the liver and tumour contours, as radiologists view it (numpy in, PNG bytes out).

Orientation: the canonical volume is RAS+ (``livseg.io.to_canonical``); radiological convention
puts anterior at the top and the patient's right on the viewer's left, so the slice's x axis is
reversed into columns and its y axis reversed into rows. Pixels keep their physical aspect ratio.
"""

from __future__ import annotations

import cv2
import numpy as np

from livseg.data import LIVER, TUMOUR

WINDOW_HU = (-160.0, 240.0)  # abdomen: level 40, width 400
LIVER_BGR = (80, 200, 60)
TUMOUR_BGR = (40, 40, 230)


def key_slice(labels: np.ndarray) -> int:
    """Index along z of the slice with the most tumour voxels, else the most liver voxels, else
    the middle slice. ``labels``: (X, Y, Z)."""
    for region in (labels == TUMOUR, labels >= LIVER):
        area = region.sum(axis=(0, 1))
        if area.any():
            return int(area.argmax())
    return labels.shape[2] // 2


def thumbnail(
    hu: np.ndarray, labels: np.ndarray, spacing: tuple[float, float], size: int = 256
) -> np.ndarray:
    """(rows, columns, 3) uint8 BGR image of ``key_slice``: ``hu`` and ``labels`` are canonical
    (X, Y, Z); ``spacing`` the (x, y) voxel size in mm; the longer side becomes ``size`` px."""
    if hu.shape != labels.shape or hu.ndim != 3:
        raise ValueError(f"hu {hu.shape} and labels {labels.shape}: expected one (X, Y, Z) shape")
    z = key_slice(labels)

    def radiological(image: np.ndarray) -> np.ndarray:  # (X, Y) → (rows: A→P, columns: R→L)
        return np.ascontiguousarray(image[::-1, ::-1].T)

    width_mm, height_mm = hu.shape[0] * spacing[0], hu.shape[1] * spacing[1]
    scale = size / max(width_mm, height_mm)
    dsize = (max(1, round(width_mm * scale)), max(1, round(height_mm * scale)))  # (w, h)
    low, high = WINDOW_HU
    grey = np.clip((radiological(hu[:, :, z]) - low) / (high - low) * 255.0, 0, 255)
    grey = cv2.resize(grey.astype(np.uint8), dsize, interpolation=cv2.INTER_AREA)
    image = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    plane = cv2.resize(radiological(labels[:, :, z]).astype(np.uint8), dsize,
                       interpolation=cv2.INTER_NEAREST)  # fmt: skip
    for region, colour in ((plane >= LIVER, LIVER_BGR), (plane == TUMOUR, TUMOUR_BGR)):
        contours, _ = cv2.findContours(region.astype(np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE)  # fmt: skip
        cv2.drawContours(image, contours, -1, colour, 1)
    return image


def thumbnail_png(
    hu: np.ndarray, labels: np.ndarray, spacing: tuple[float, float], size: int = 256
) -> bytes:
    """``thumbnail`` encoded as PNG."""
    ok, encoded = cv2.imencode(".png", thumbnail(hu, labels, spacing, size))
    if not ok:
        raise ValueError("OpenCV could not encode the thumbnail as PNG")
    return encoded.tobytes()
