import numpy as np
import pytest

from livseg.data import (
    IntensityStats,
    PreprocessConfig,
    resample_to_grid,
    slab_indices,
    slice_samples,
    stats_from_histogram,
    zscore,
)
from livseg.data.transforms import (
    bilateral_filter,
    encode_labels,
    liver_histogram,
    resize_image,
    resize_mask,
    select_slices,
    window,
)


def test_window_clips_to_hu_range():
    hu = np.array([-1000, -200, 0, 250, 3000], np.int16)
    assert window(hu, -200, 250).tolist() == [-200, -200, 0, 250, 250]


def test_zscore_known_values():
    out = zscore(np.array([100.0, 120.0, 80.0]), mean=100.0, std=20.0)
    assert out.tolist() == [0.0, 1.0, -1.0] and out.dtype == np.float32
    with pytest.raises(ValueError, match="positive"):
        zscore(np.zeros(3), 0.0, 0.0)


def test_resize_mask_keeps_label_set_and_is_nearest():
    mask = np.zeros((64, 64), np.uint8)
    mask[10:40, 10:40] = 1
    mask[20:25, 20:25] = 2
    out = resize_mask(mask, 32)
    assert out.shape == (32, 32) and set(np.unique(out)) == {0, 1, 2}
    assert out[10, 10] == 2 and out[0, 0] == 0  # 20..24 → 10..12 at half size


def test_resize_image_averages_when_shrinking():
    image = np.zeros((4, 4), np.float32)
    image[:2, :2] = 4.0
    assert resize_image(image, 2).tolist() == [[4.0, 0.0], [0.0, 0.0]]


def test_slab_order_and_clamping():
    assert slab_indices(5, 2, 10) == [3, 4, 5, 6, 7]
    assert slab_indices(0, 2, 10) == [0, 0, 0, 1, 2]
    assert slab_indices(9, 1, 10) == [8, 9, 9]


def test_encode_labels_modes():
    labels = np.array([0, 1, 2, 2], np.uint8)
    assert encode_labels(labels).tolist() == [0, 1, 2, 2]
    assert encode_labels(labels, "binary").tolist() == [0, 1, 1, 1]
    with pytest.raises(ValueError, match="binary"):
        encode_labels(labels, "other")


def test_histogram_statistics_match_numpy():
    rng = np.random.default_rng(0)
    hu = rng.normal(110, 20, size=(20, 20, 5)).round()
    labels = np.zeros(hu.shape, np.uint8)
    labels[5:15, 5:15] = 1
    labels[8:10, 8:10] = 2
    stats = stats_from_histogram(liver_histogram(hu, labels, -200, 250), -200)
    liver = hu[labels > 0]
    assert stats.voxels == liver.size
    assert stats.mean == pytest.approx(liver.mean(), abs=1e-9)
    assert stats.std == pytest.approx(liver.std(), abs=1e-9)
    assert stats.p005 == np.percentile(liver, 0.5, method="inverted_cdf")
    assert stats.p995 == np.percentile(liver, 99.5, method="inverted_cdf")


def test_histograms_add_across_cases():
    a = np.full((4, 4, 1), 100.0)
    b = np.full((4, 4, 1), 140.0)
    ones = np.ones((4, 4, 1), np.uint8)
    hist = liver_histogram(a, ones, -200, 250) + liver_histogram(b, ones, -200, 250)
    stats = stats_from_histogram(hist, -200)
    assert stats.mean == 120.0 and stats.std == 20.0


def test_no_liver_is_a_clear_error():
    with pytest.raises(ValueError, match="no liver voxels"):
        stats_from_histogram(np.zeros(451, np.int64), -200)


def test_bilateral_filter_keeps_constant_and_edges_smooths_noise():
    flat = np.full((32, 32), 100.0, np.float32)
    assert np.allclose(bilateral_filter(flat, 5, 25.0, 3.0), 100.0)
    step = np.zeros((32, 32), np.float32)
    step[:, 16:] = 500.0  # an edge far larger than σ_r stays sharp
    out = bilateral_filter(step, 5, 25.0, 3.0)
    assert np.allclose(out[:, :16], 0.0, atol=1e-3) and np.allclose(out[:, 16:], 500.0, atol=1e-3)
    noisy = 100 + np.random.default_rng(1).normal(0, 10, (64, 64)).astype(np.float32)
    assert bilateral_filter(noisy, 5, 25.0, 3.0).std() < 0.7 * noisy.std()


def test_select_slices_keeps_liver_and_margin():
    labels = np.zeros((4, 4, 30), np.uint8)
    labels[:, :, 10:15] = 1
    kept = select_slices(labels, margin=2, other_fraction=0.0, rng=np.random.default_rng(0))
    assert kept.tolist() == list(range(8, 17))
    everything = select_slices(labels, 2, 1.0, np.random.default_rng(0))
    assert everything.tolist() == list(range(30))


def test_slice_samples_match_hand_pipeline():
    cfg = PreprocessConfig(size=16, context=1, bilateral=False)
    stats = IntensityStats(mean=50.0, std=10.0, p005=0, p995=0, voxels=1)
    hu = np.stack([np.full((32, 32), 10.0 * z) for z in range(6)], axis=-1)
    labels = np.zeros(hu.shape, np.uint8)
    labels[:16, :, 2] = 2
    out = slice_samples(hu, labels, np.array([0, 2]), cfg, stats)
    assert out["image"].shape == (2, 3, 16, 16) and out["image"].dtype == np.float16
    # channel order is inferior → superior around the centre slice: (z-1, z, z+1), clamped
    assert out["image"][0, :, 0, 0].tolist() == [-5.0, -5.0, -4.0]
    assert out["image"][1, :, 0, 0].tolist() == [-4.0, -3.0, -2.0]
    assert out["mask"][1, :8].min() == 2 and out["mask"][1, 8:].max() == 0
    assert out["slice_index"].tolist() == [0, 2]


def test_resample_to_grid_shapes_and_labels():
    labels = np.zeros((40, 30, 20), np.uint8)
    labels[10:30, 10:20, 5:15] = 2
    out = resample_to_grid(labels, (16, 16, 16), order=0)
    assert out.shape == (16, 16, 16) and set(np.unique(out)) == {0, 2}
