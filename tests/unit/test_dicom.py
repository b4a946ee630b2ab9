"""DICOM series: geometry-sorted loading, equality with the NIfTI twin, and broken series."""

from __future__ import annotations

import os
import random

import nibabel as nib
import numpy as np
import pydicom
import pytest

from livseg.io import VolumeError, read_dicom_series, read_nifti, read_volume, write_mask
from livseg.synthetic import generate_case, write_case_dicom, write_case_nifti


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    root = tmp_path_factory.mktemp("twin")
    case = generate_case(5, seed=2, size=64)
    write_case_nifti(case, root / "volume-5.nii.gz", root / "segmentation-5.nii.gz")
    write_case_dicom(case, root / "dicom")
    return root, case


def _shuffled_copy(src, dst, rng):
    dst.mkdir()
    files = sorted(src.iterdir())
    names = [f"IM{n:04d}" for n in rng.sample(range(len(files)), len(files))]
    for path, name in zip(files, names, strict=True):
        (dst / name).write_bytes(path.read_bytes())
    (dst / "README.txt").write_text("not a DICOM file")  # stray files are ignored
    return dst


def test_series_with_shuffled_names_equals_nifti_twin(twin, tmp_path):
    root, case = twin
    series = _shuffled_copy(root / "dicom", tmp_path / "shuffled", random.Random(0))
    from_dicom = read_volume(str(series))
    from_nifti = read_nifti(str(root / "volume-5.nii.gz"))
    np.testing.assert_array_equal(from_dicom.array, from_nifti.array)
    np.testing.assert_allclose(from_dicom.affine, from_nifti.affine, atol=1e-4)
    assert from_dicom.source_shape == case.ct.shape
    assert from_dicom.meta["format"] == "dicom" and from_dicom.meta["patient"].startswith("pt-")
    assert "Synthetic" not in str(from_dicom.meta)  # no identifying tags travel


def test_mask_written_for_a_series_has_its_grid(twin, tmp_path):
    root, case = twin
    vol = read_dicom_series(str(root / "dicom"))
    write_mask((vol.array > 0).astype(np.uint8), vol, str(tmp_path / "mask.nii.gz"))
    img = nib.load(str(tmp_path / "mask.nii.gz"))
    assert img.shape == vol.source_shape
    np.testing.assert_allclose(img.affine, vol.source_affine)


def _edit(folder, fn):
    files = sorted(folder.glob("IM*"))
    datasets = [pydicom.dcmread(str(f)) for f in files]
    order = np.argsort([float(ds.ImagePositionPatient[2]) for ds in datasets])
    fn([files[i] for i in order], [datasets[i] for i in order])


def test_missing_slice_is_reported(twin, tmp_path):
    root, _ = twin
    series = _shuffled_copy(root / "dicom", tmp_path / "s", random.Random(1))
    _edit(series, lambda files, _ds: os.remove(files[len(files) // 2]))
    with pytest.raises(VolumeError, match=r"1 slice\(s\) missing"):
        read_dicom_series(str(series))


def test_gantry_tilt_is_rejected(twin, tmp_path):
    root, _ = twin
    series = _shuffled_copy(root / "dicom", tmp_path / "s", random.Random(2))

    def tilt(files, datasets):
        for k, (path, ds) in enumerate(zip(files, datasets, strict=True)):
            pos = [float(v) for v in ds.ImagePositionPatient]
            pos[1] += 0.3 * k * float(ds.SliceThickness)  # shear along y: ~17° tilt
            ds.ImagePositionPatient = pos
            ds.save_as(str(path))

    _edit(series, tilt)
    with pytest.raises(VolumeError, match="gantry tilt"):
        read_dicom_series(str(series))


def test_uneven_spacing_and_empty_folder(twin, tmp_path):
    root, _ = twin
    series = _shuffled_copy(root / "dicom", tmp_path / "s", random.Random(3))

    def nudge(files, datasets):
        ds = datasets[3]
        pos = [float(v) for v in ds.ImagePositionPatient]
        pos[2] += 0.4 * abs(
            float(datasets[1].ImagePositionPatient[2]) - float(datasets[0].ImagePositionPatient[2])
        )
        ds.ImagePositionPatient = pos
        ds.save_as(str(files[3]))

    _edit(series, nudge)
    with pytest.raises(VolumeError, match="uneven slice spacing"):
        read_dicom_series(str(series))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    with pytest.raises(VolumeError, match="no DICOM image slices"):
        read_dicom_series(str(empty))
