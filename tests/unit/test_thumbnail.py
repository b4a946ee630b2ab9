"""The review thumbnail and the night's HTML page."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from livseg.archive.night import night_html
from livseg.inference import key_slice, thumbnail, thumbnail_png
from livseg.inference.thumbnail import LIVER_BGR, TUMOUR_BGR


def _volume():
    """Canonical RAS+ (X, Y, Z): a liver block on the patient's right (high x) and anterior
    (high y); a tumour only on slice 7."""
    hu = np.full((40, 20, 10), -1000.0, np.float32)
    labels = np.zeros(hu.shape, np.uint8)
    labels[25:38, 10:18, 2:9] = 1
    labels[30:34, 12:16, 7] = 2
    hu[labels == 1], hu[labels == 2] = 100.0, 30.0
    return hu, labels


def test_key_slice_prefers_tumour_then_liver_then_the_middle():
    hu, labels = _volume()
    assert key_slice(labels) == 7
    assert key_slice(np.where(labels == 2, 1, labels)) in range(2, 9)
    assert key_slice(np.zeros_like(labels)) == 5


def test_thumbnail_is_radiological_keeps_aspect_and_draws_contours():
    hu, labels = _volume()
    image = thumbnail(hu, labels, spacing=(1.0, 1.5), size=80)
    assert image.shape == (60, 80, 3)  # 30 mm (y, rows) × 40 mm (x, columns): aspect kept
    liver_px = np.argwhere((image == LIVER_BGR).all(axis=2))
    tumour_px = np.argwhere((image == TUMOUR_BGR).all(axis=2))
    assert len(liver_px) and len(tumour_px)
    assert abs(int(image[20, 10, 0]) - round((100 + 160) / 400 * 255)) <= 2  # liver, windowed
    assert image[55, 75].tolist() == [0, 0, 0]  # air
    # patient's right (high x) on the viewer's left, anterior (high y) at the top
    assert liver_px[:, 1].max() < image.shape[1] / 2 and liver_px[:, 0].max() < image.shape[0] / 2
    decoded = cv2.imdecode(np.frombuffer(thumbnail_png(hu, labels, (1.0, 1.5), 80), np.uint8),
                           cv2.IMREAD_COLOR)  # fmt: skip
    assert np.array_equal(decoded, image)
    with pytest.raises(ValueError, match="shape"):
        thumbnail(hu, labels[:, :, :5], (1.0, 1.0))


def test_night_page_lists_flagged_studies_first_and_escapes_text():
    def row(key, review, reasons=""):
        return {"key": key, "input": f"/archive/<{key}>.nii.gz", "review": review,
                "reasons": reasons, "liver_ml": 1500.0, "tumour_count": 1, "tumour_ml": 3.0,
                "largest_tumour_diameter_mm": 12.0, "confidence": 0.97, "agreement": 0.95,
                "version": "v0001", "thumbnail": f"/out/thumbnails/{key}.png"}  # fmt: skip

    summary = {"run_id": "r1", "model": "livseg-v0001", "seconds": 3.0, "studies_per_s": 1.0,
               "counts": {"segmented": 2, "failed": 1, "review": 1}}  # fmt: skip
    page = night_html(
        "/out",
        summary,
        [row("aaa", False), row("zzz", True, "no liver found")],
        [{"input": "/archive/x.txt", "stage": "discover", "reason": "not a NIfTI"}],
    )
    assert page.index("zzz") < page.index("aaa")  # flagged first, although later by key
    assert 'src="thumbnails/zzz.png"' in page  # relative: the folder can be moved
    assert "no liver found" in page and "not a NIfTI" in page
    assert "<zzz>" not in page and "&lt;zzz&gt;" in page
