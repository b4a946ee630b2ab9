import gzip

import nibabel as nib
import numpy as np
import pytest
from nibabel import orientations as nio

from livseg.io import VolumeError, read_case, read_nifti, write_mask

CANON_AFFINE = np.array(
    [[0.8, 0, 0, -150.0], [0, 0.8, 0, -120.0], [0, 0, 2.5, -300.0], [0, 0, 0, 1]]
)


def _canonical_ct() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(-1000, 1500, size=(24, 20, 12)).astype(np.int16)


def _save(path, array, affine, slope=None, inter=None):
    img = nib.Nifti1Image(array, affine)
    if slope is not None:
        img.header.set_slope_inter(slope, inter)
    nib.save(img, str(path))


def _reoriented(array, affine, codes):
    ornt = nio.ornt_transform(nio.axcodes2ornt("RAS"), nio.axcodes2ornt(codes))
    return nio.apply_orientation(array, ornt), affine @ nio.inv_ornt_aff(ornt, array.shape)


@pytest.mark.parametrize("codes", ["RAS", "LAS", "LPS", "LPI", "ASR"])
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_any_orientation_reads_to_same_hu_and_mask_goes_back(tmp_path, codes, suffix):
    ct = _canonical_ct()
    array, affine = _reoriented(ct, CANON_AFFINE, codes)
    path = tmp_path / f"volume-1{suffix}"
    _save(path, array, affine)
    vol = read_nifti(str(path))
    assert vol.array.dtype == np.float32
    np.testing.assert_array_equal(vol.array, ct)
    np.testing.assert_allclose(vol.affine, CANON_AFFINE)
    assert vol.spacing == pytest.approx((0.8, 0.8, 2.5))
    assert nib.aff2axcodes(vol.affine) == ("R", "A", "S")

    mask = (vol.array > 500).astype(np.uint8)
    out = tmp_path / f"mask{suffix}"
    write_mask(mask, vol, str(out))
    back = nib.load(str(out))
    assert back.shape == array.shape
    np.testing.assert_allclose(back.affine, affine)
    np.testing.assert_array_equal(np.asarray(back.dataobj), (array > 500).astype(np.uint8))


def test_scaled_int16_gives_hu(tmp_path):
    raw = np.arange(24 * 20 * 12, dtype=np.int16).reshape(24, 20, 12) % 2000
    path = tmp_path / "volume-2.nii.gz"
    _save(path, raw, CANON_AFFINE, slope=0.5, inter=-1024.0)
    vol = read_nifti(str(path))
    np.testing.assert_array_equal(vol.array, raw * 0.5 - 1024.0)


def test_mask_values_rounded_to_labels(tmp_path):
    labels = np.zeros((16, 16, 4), np.float32)
    labels[4:8, 4:8] = 2.0000001
    path = tmp_path / "segmentation-1.nii"
    _save(path, labels, CANON_AFFINE)
    vol = read_nifti(str(path), labels=True)
    assert vol.array.dtype == np.uint8 and set(np.unique(vol.array)) == {0, 2}


def _bad_file(tmp_path, kind):
    path = tmp_path / "volume-9.nii.gz"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        _save(path, _canonical_ct(), CANON_AFFINE)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "text":
        path = tmp_path / "volume-9.nii"
        path.write_text("this is not an image\n" * 40)
    elif kind == "4d":
        _save(path, np.zeros((16, 16, 8, 2), np.int16), CANON_AFFINE)
    elif kind == "2d":
        _save(path, np.zeros((16, 16), np.int16), CANON_AFFINE)
    elif kind == "nan":
        data = np.zeros((16, 16, 4), np.float32)
        data[0, 0, 0] = np.nan
        _save(path, data, CANON_AFFINE)
    elif kind == "gz-of-garbage":
        path.write_bytes(gzip.compress(b"garbage" * 100))
    return path


@pytest.mark.parametrize(
    "kind, message",
    [
        ("empty", "empty file"),
        ("truncated", "truncated or corrupt"),
        ("text", "not a NIfTI"),
        ("4d", r"4-D image \(16, 16, 8, 2\); expected a 3-D CT volume"),
        ("2d", "2-D image"),
        ("nan", "NaN or infinite"),
        ("gz-of-garbage", "not a NIfTI"),
    ],
)
def test_bad_files_name_the_file_and_the_problem(tmp_path, kind, message):
    path = _bad_file(tmp_path, kind)
    with pytest.raises(VolumeError, match=message) as info:
        read_nifti(str(path))
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(VolumeError, match="not found"):
        read_nifti(str(tmp_path / "volume-3.nii"))


def test_mask_with_other_shape_is_rejected(tmp_path):
    _save(tmp_path / "volume-1.nii", _canonical_ct(), CANON_AFFINE)
    _save(tmp_path / "segmentation-1.nii", np.zeros((24, 20, 11), np.uint8), CANON_AFFINE)
    with pytest.raises(VolumeError, match=r"24×20×11 voxels.* is not on the voxel grid of"):
        read_case(str(tmp_path / "volume-1.nii"), str(tmp_path / "segmentation-1.nii"))


def test_mask_follows_image_orientation(tmp_path):
    ct = _canonical_ct()
    labels = (ct > 0).astype(np.uint8)
    array, affine = _reoriented(ct, CANON_AFFINE, "LPS")
    mask_array, _ = _reoriented(labels, CANON_AFFINE, "LPS")
    _save(tmp_path / "volume-1.nii", array, affine)
    _save(tmp_path / "segmentation-1.nii", mask_array, affine)
    vol, mask = read_case(str(tmp_path / "volume-1.nii"), str(tmp_path / "segmentation-1.nii"))
    np.testing.assert_array_equal(mask, labels)
    np.testing.assert_array_equal(vol.array, ct)


@pytest.mark.parametrize("mask_codes", ["RAS", "LAS", "RPI", "ASL"])
def test_mask_stored_in_another_voxel_order_lines_up(tmp_path, mask_codes):
    """The mask's own header decides its orientation: flips and permutations are undone."""
    ct = _canonical_ct()
    labels = (ct > 0).astype(np.uint8)
    _save(tmp_path / "volume-1.nii", *_reoriented(ct, CANON_AFFINE, "LPS"))
    _save(tmp_path / "segmentation-1.nii", *_reoriented(labels, CANON_AFFINE, mask_codes))
    vol, mask = read_case(str(tmp_path / "volume-1.nii"), str(tmp_path / "segmentation-1.nii"))
    np.testing.assert_array_equal(mask, labels)
    np.testing.assert_array_equal(vol.array, ct)


def test_mask_on_another_grid_is_refused_naming_both_files(tmp_path):
    ct = _canonical_ct()
    shifted = CANON_AFFINE.copy()
    shifted[0, 3] += 10.0  # same shape and orientation, 10 mm to the side
    _save(tmp_path / "volume-1.nii", ct, CANON_AFFINE)
    _save(tmp_path / "segmentation-1.nii", (ct > 0).astype(np.uint8), shifted)
    with pytest.raises(VolumeError) as info:
        read_case(str(tmp_path / "volume-1.nii"), str(tmp_path / "segmentation-1.nii"))
    assert "segmentation-1.nii" in str(info.value) and "volume-1.nii" in str(info.value)
    assert "origin (-140.0, -120.0, -300.0)" in str(info.value)


def test_mask_without_orientation_takes_the_image_grid(tmp_path):
    ct = _canonical_ct()
    labels = (ct > 0).astype(np.uint8)
    array, affine = _reoriented(ct, CANON_AFFINE, "LPS")
    _save(tmp_path / "volume-1.nii", array, affine)
    bare = nib.Nifti1Image(_reoriented(labels, CANON_AFFINE, "LPS")[0], None)
    bare.header.set_qform(None, code=0)
    bare.header.set_sform(None, code=0)
    nib.save(bare, str(tmp_path / "segmentation-1.nii"))
    _, mask = read_case(str(tmp_path / "volume-1.nii"), str(tmp_path / "segmentation-1.nii"))
    np.testing.assert_array_equal(mask, labels)


def test_training_and_scoring_paths_agree_on_mask_headers(tmp_path):
    """read_case (training) and the --pred/--ref scorer read one flipped mask the same way."""
    from livseg.evaluate import score_mask_pair

    ct = _canonical_ct()
    labels = (ct > 0).astype(np.uint8) + (ct > 1000).astype(np.uint8)
    _save(tmp_path / "volume-1.nii", *_reoriented(ct, CANON_AFFINE, "LPS"))
    _save(tmp_path / "segmentation-1.nii", *_reoriented(labels, CANON_AFFINE, "LPS"))
    _save(tmp_path / "pred-1.nii", *_reoriented(labels, CANON_AFFINE, "RAS"))
    bare = nib.Nifti1Image(_reoriented(labels, CANON_AFFINE, "LPS")[0], None)
    bare.header.set_qform(None, code=0)
    bare.header.set_sform(None, code=0)
    nib.save(bare, str(tmp_path / "pred-2.nii"))  # no header grid: the reference's is taken
    noisy = CANON_AFFINE.copy()
    noisy[:3] += 1e-6  # float32 noise of a header re-saved by another tool
    _save(tmp_path / "pred-3.nii", *_reoriented(labels, noisy, "LAS"))
    for pred in ("pred-1.nii", "pred-2.nii", "pred-3.nii"):
        _, from_training = read_case(str(tmp_path / "volume-1.nii"), str(tmp_path / pred))
        np.testing.assert_array_equal(from_training, labels)
        row = score_mask_pair(1, str(tmp_path / pred), str(tmp_path / "segmentation-1.nii"))
        assert row["row"]["status"] == "ok", row["row"]
        assert row["row"]["liver_dice"] == 1.0 and row["row"]["tumour_dice"] == 1.0


def test_a_mask_keeps_differing_qform_and_sform(tmp_path):
    """Viewers differ in which form they prefer: the mask must sit where the CT sits in both."""
    sform = np.diag([0.8, 0.8, 2.5, 1.0])
    sform[:3, 3] = (-100.0, -120.0, 40.0)
    qform = sform.copy()
    qform[:3, 3] += (10.0, 0.0, -5.0)
    img = nib.Nifti1Image(np.zeros((16, 12, 8), np.int16), sform)
    img.set_qform(qform, code=1)
    img.set_sform(sform, code=2)
    nib.save(img, tmp_path / "ct.nii.gz")
    volume = read_nifti(str(tmp_path / "ct.nii.gz"))
    write_mask(np.zeros(volume.array.shape, np.uint8), volume, str(tmp_path / "mask.nii.gz"))
    mask = nib.load(tmp_path / "mask.nii.gz")
    (q, qcode), (s, scode) = mask.header.get_qform(coded=True), mask.header.get_sform(coded=True)
    assert np.allclose(q, qform, atol=1e-4) and qcode == 1
    assert np.allclose(s, sform, atol=1e-4) and scode == 2
    assert mask.shape == img.shape
