"""The torch slice recipe against OpenCV's definitions on CT-like slices."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from livseg.data import PreprocessConfig
from livseg.data.slice_ops import bilateral_slices, preprocess_slices, resize_slices
from livseg.synthetic import generate_case


@pytest.fixture(scope="module")
def ct_slices() -> np.ndarray:
    """Windowed axial slices through a generated liver (noise, vessels, tumours), (N, H, W)."""
    case = generate_case(3, size=96)
    hu = np.clip(case.ct, -200, 250).astype(np.float32)  # file orientation: any axis is fine here
    mid = hu.shape[2] // 2
    return np.ascontiguousarray(np.moveaxis(hu[:, :, mid - 4 : mid + 4], -1, 0))


@pytest.mark.parametrize("diameter,sigma_color,sigma_space", [(5, 25.0, 3.0), (9, 75.0, 5.0)])
def test_bilateral_matches_opencv(ct_slices, diameter, sigma_color, sigma_space):
    ours = bilateral_slices(torch.from_numpy(ct_slices), diameter, sigma_color, sigma_space)
    theirs = np.stack(
        [cv2.bilateralFilter(s, diameter, sigma_color, sigma_space) for s in ct_slices]
    )
    diff = np.abs(ours.numpy() - theirs)
    # OpenCV interpolates exp() from a 4,096-bin table: ≈ 1e-4 HU apart on a 450 HU window.
    assert diff.max() < 1e-3, diff.max()
    assert np.abs(ours.numpy() - ct_slices).max() > 1.0  # it did filter


@pytest.mark.parametrize("shape,size", [((96, 96), 64), ((100, 90), 64), ((40, 50), 64)])
def test_resize_matches_opencv(shape, size):
    rng = np.random.default_rng(0)
    image = rng.normal(40, 60, shape).astype(np.float32)
    interp = cv2.INTER_AREA if max(shape) > size else cv2.INTER_LINEAR
    theirs = cv2.resize(image, (size, size), interpolation=interp)
    ours = resize_slices(torch.from_numpy(image)[None], (size, size))[0].numpy()
    # cv2 takes (width, height); our arrays are (rows, cols) like its images
    assert np.abs(ours - theirs).max() < 1e-3


def test_preprocess_slices_matches_the_opencv_recipe(ct_slices):
    cfg = PreprocessConfig(size=64)
    mean, std = 60.0, 30.0
    bil = (cfg.bilateral_diameter, cfg.bilateral_sigma_color, cfg.bilateral_sigma_space)
    ours = preprocess_slices(torch.from_numpy(ct_slices), 64, cfg.window, bil, mean, std)
    theirs = [
        (cv2.resize(cv2.bilateralFilter(s, *bil), (64, 64), interpolation=cv2.INTER_AREA) - mean)
        / std
        for s in ct_slices
    ]
    assert ours.shape == (len(ct_slices), 64, 64) and ours.dtype == torch.float32
    assert np.abs(ours.numpy() - np.stack(theirs)).max() < 0.005  # in z units (σ = 30 HU)


def test_bad_std_is_refused(ct_slices):
    with pytest.raises(ValueError, match="positive standard deviation"):
        preprocess_slices(torch.from_numpy(ct_slices), 64, (-200, 250), None, 0.0, 0.0)
