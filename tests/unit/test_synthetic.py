"""Unit tests for livseg.synthetic: anatomy facts, determinism, NIfTI/DICOM writers, layouts."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pydicom
import pytest
from scipy import ndimage

from livseg.synthetic import (
    LITS_REFERENCE,
    LIVER_HU,
    PHASES,
    generate_case,
    generator,
    measured_statistics,
    write_case_dicom,
    write_case_nifti,
    write_dataset,
)

SIZE = 64
CASE_IDS = range(16)


@pytest.fixture(scope="module")
def cases() -> dict:
    return {i: generate_case(i, seed=0, size=SIZE) for i in CASE_IDS}


@pytest.fixture
def noise_free(monkeypatch):
    """Generate without blur and noise, so means measured on the arrays are exact."""
    monkeypatch.setattr(generator, "add_noise", lambda *args, **kwargs: None)
    return lambda case_id: generate_case(case_id, seed=0, size=96)


def world_coords(case) -> np.ndarray:
    """World RAS mm of every voxel, shape (X, Y, Z, 3)."""
    ijk = np.stack(np.indices(case.ct.shape), axis=-1).astype(float)
    return ijk @ case.affine[:3, :3].T + case.affine[:3, 3]


def test_deterministic_per_seed_and_case() -> None:
    a, b = generate_case(3, seed=7, size=SIZE), generate_case(3, seed=7, size=SIZE)
    np.testing.assert_array_equal(a.ct, b.ct)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.affine, b.affine)
    assert a.truth == b.truth
    for other in (generate_case(4, seed=7, size=SIZE), generate_case(3, seed=8, size=SIZE)):
        assert other.ct.shape != a.ct.shape or not np.array_equal(other.ct, a.ct)


def test_types_geometry_and_orientation(cases) -> None:
    for case in cases.values():
        assert case.ct.dtype == np.int16 and case.labels.dtype == np.uint8
        assert case.ct.shape == case.labels.shape and case.ct.shape[:2] == (SIZE, SIZE)
        assert set(np.unique(case.labels)) <= {0, 1, 2}
        assert case.ct.min() >= -1024 and case.ct.max() <= 3071
        assert case.affine.shape == (4, 4) and case.affine.dtype == np.float64
        np.testing.assert_allclose(np.linalg.norm(case.affine[:3, :3], axis=0), case.spacing)
        assert "".join(nib.aff2axcodes(case.affine)) == case.truth["axcodes"]
        fov = case.spacing[0] * SIZE
        assert 300 <= fov <= 515, fov
        assert 170 <= case.spacing[2] * case.ct.shape[2] <= 270 + 5 * case.spacing[2]
    assert len({c.truth["axcodes"] for c in cases.values()}) >= 3, "file orientation must vary"


def test_liver_on_patient_right_and_inside_the_scan(cases) -> None:
    for case in cases.values():
        world = world_coords(case)
        liver_x = world[case.labels > 0][:, 0].mean()
        assert liver_x > case.truth["spleen"]["center_mm"][0] + 50  # RAS: +x = patient right
        assert not case.labels[:, :, 0].any() and not case.labels[:, :, -1].any()
        assert (case.labels == 1).sum() > 500


def test_labels_only_inside_the_body(cases) -> None:
    for case in cases.values():
        assert case.ct[case.labels > 0].min() > -500


def test_tumours_lie_in_the_liver(cases) -> None:
    for case in cases.values():
        tumour = case.labels == 2
        if not tumour.any():
            continue
        comps, n = ndimage.label(tumour)
        liver = case.labels == 1
        for k in range(1, n + 1):  # every tumour blob borders liver tissue
            assert (ndimage.binary_dilation(comps == k) & liver).any()
        world = world_coords(case)[tumour]
        near = np.zeros(len(world), bool)
        for t in case.truth["tumours"]:
            reach = 1.3 * max(t["radii_mm"]) + np.linalg.norm(case.spacing)
            near |= np.linalg.norm(world - t["center_mm"], axis=1) < reach
        assert near.all(), "tumour voxels far from every true tumour"


def test_tumour_count_varies_with_case() -> None:
    counts = [len(generate_case(i, seed=1, size=32).truth["tumours"]) for i in range(20)]
    assert 0 in counts and max(counts) >= 2 and max(counts) <= 5
    assert 1 <= counts.count(0) <= 10
    assert generate_case(0, seed=1, size=32, max_tumours=0).truth["tumours"] == []
    none = next(i for i, n in enumerate(counts) if n == 0)
    assert not (generate_case(none, seed=1, size=32).labels == 2).any()


def test_liver_intensity_follows_the_phase(cases) -> None:
    for case in cases.values():
        low, high = LIVER_HU[case.truth["phase"]]
        assert low <= case.truth["liver_hu"] <= high
        assert low - 12 <= case.ct[case.labels == 1].mean() <= high + 12
        assert 8 <= case.truth["noise_sigma"] <= 32
    assert {c.truth["phase"] for c in cases.values()} == set(PHASES)
    assert {c.truth["kernel"] for c in cases.values()} == {"soft", "sharp"}


def test_noise_level_matches_truth(monkeypatch) -> None:
    noisy = [generate_case(i, seed=0, size=96) for i in range(3)]
    monkeypatch.setattr(generator, "add_noise", lambda *args, **kwargs: None)
    for case in noisy:
        clean = generate_case(case.case_id, seed=0, size=96)
        core = ndimage.binary_erosion(clean.labels == 1, iterations=2)
        residual = case.ct[core].astype(float) - clean.ct[core]
        assert 0.8 <= residual.std() / case.truth["noise_sigma"] <= 1.25


def test_spleen_overlaps_liver_intensity(noise_free) -> None:
    """In the portal phase the spleen looks like the liver: only shape and place tell them apart."""
    checked = 0
    for case_id in range(10):
        case = noise_free(case_id)
        if case.truth["phase"] != "portal":
            continue
        spleen = case.truth["spleen"]
        core = np.linalg.norm(world_coords(case) - spleen["center_mm"], axis=-1)
        core = core < 0.4 * min(spleen["radii_mm"])
        liver_mean, spleen_mean = case.ct[case.labels == 1].mean(), case.ct[core].mean()
        assert core.sum() >= 5 and abs(spleen_mean - liver_mean) <= 25
        checked += 1
    assert checked >= 3


def test_liver_boundary_is_unambiguous(noise_free) -> None:
    """No unlabelled neighbour of the liver looks like liver: spleen, heart, kidneys kept away."""
    for case_id in range(10):
        case = noise_free(case_id)
        organ = case.labels > 0
        rim = ndimage.binary_dilation(organ) & ~organ
        values = case.ct[rim].astype(float)
        assert np.mean(np.abs(values - case.truth["liver_hu"]) < 15) < 0.002, case_id


def test_tumour_contrast_measured_on_arrays(noise_free) -> None:
    """Plain lesions (no rim or core): the liver-minus-tumour HU measured on the arrays follows
    the drawn contrast, hypodense or hyperdense."""
    checked = 0
    for case_id in range(16):
        case = noise_free(case_id)
        tumours = [t for t in case.truth["tumours"] if t["voxels"] > 0]
        if sum(t["voxels"] for t in tumours) < 100 or any(t["rim_hu"] for t in tumours):
            continue
        expected = np.average(
            [t["contrast_hu"] for t in tumours], weights=[t["voxels"] for t in tumours]
        )
        measured = case.ct[case.labels == 1].mean() - case.ct[case.labels == 2].mean()
        assert abs(measured - 0.8 * expected) <= 0.3 * abs(expected) + 10, (case_id, measured)
        checked += 1
    assert checked >= 3


def test_ringed_lesions_have_a_bright_rim_and_a_dark_core(noise_free) -> None:
    checked = 0
    for case_id in range(24):
        case = noise_free(case_id)
        for t in case.truth["tumours"]:
            if not t["rim_hu"] or t["voxels"] < 300 or t["surface"]:
                continue
            dist = np.linalg.norm(world_coords(case) - t["center_mm"], axis=-1)
            lesion = case.labels == 2
            core = lesion & (dist < 0.2 * t["diameter_mm"])
            shell = lesion & (dist > 0.4 * t["diameter_mm"]) & (dist < 0.6 * t["diameter_mm"])
            if core.sum() < 5 or shell.sum() < 5:
                continue
            assert case.ct[shell].mean() > case.ct[core].mean() + 15, case_id
            checked += 1
    assert checked >= 1


def test_generated_statistics_match_published_lits_ranges() -> None:
    """The generated set against what is published about LiTS and abdominal CT (see
    ``livseg.synthetic.reference``): liver HU by phase, tumour-liver contrast, lesion sizes,
    tumour burden, share of cases without tumour, voxel spacing."""
    cases = [generate_case(i, seed=3, size=64) for i in range(40)]
    facts = measured_statistics(cases)
    for name, (low, high) in LITS_REFERENCE.items():
        assert low <= facts[name] <= high, (name, facts[name], (low, high))


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_nifti_round_trip(tmp_path, cases, suffix) -> None:
    case = cases[2]
    vol, seg = tmp_path / f"v{suffix}", tmp_path / "sub" / f"s{suffix}"
    write_case_nifti(case, vol, seg)
    for path, arr in ((vol, case.ct), (seg, case.labels)):
        img = nib.load(path)
        assert img.get_data_dtype() == arr.dtype
        np.testing.assert_array_equal(np.asarray(img.dataobj), arr)
        np.testing.assert_allclose(img.affine, case.affine, atol=1e-4)
        assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 1
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(["sub", vol.name, seg.name])
    with pytest.raises(ValueError, match=r"\.nii"):
        write_case_nifti(case, tmp_path / "v.mha", seg)


def test_dicom_series_geometry_and_rescale(tmp_path, cases) -> None:
    case = next(c for c in cases.values() if c.truth["axcodes"] not in ("LPS", "LPI"))
    write_case_dicom(case, tmp_path / "series")
    files = sorted((tmp_path / "series").iterdir())
    assert len(files) == case.ct.shape[2]
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ case.affine
    order, uids = [], set()
    for f in files:
        ds = pydicom.dcmread(f)
        k = int(ds.InstanceNumber) - 1
        order.append(k)
        uids.add(ds.SOPInstanceUID)
        assert ds.Modality == "CT" and ds.SOPClassUID == pydicom.uid.CTImageStorage
        assert ds.PatientID == f"SYN{case.case_id:04d}" and str(ds.PatientName) == "Synthetic^Case"
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        np.testing.assert_array_equal(hu, case.ct[:, :, k].T)
        np.testing.assert_allclose(
            [float(v) for v in ds.ImagePositionPatient], lps[:3, 3] + k * lps[:3, 2], atol=1e-3
        )
        iop = np.array([float(v) for v in ds.ImageOrientationPatient])
        np.testing.assert_allclose(iop[:3] * case.spacing[0], lps[:3, 0], atol=1e-6)
        np.testing.assert_allclose(iop[3:] * case.spacing[1], lps[:3, 1], atol=1e-6)
        np.testing.assert_allclose(
            [float(v) for v in ds.PixelSpacing], case.spacing[1::-1], rtol=1e-6
        )
        np.testing.assert_allclose(float(ds.SliceThickness), case.spacing[2], rtol=1e-6)
    assert len(uids) == len(files) and sorted(order) == list(range(len(files)))
    assert order != sorted(order) and order != sorted(order, reverse=True), "names give slice order"
    first = [f.name for f in files]
    write_case_dicom(
        case, tmp_path / "series"
    )  # deterministic UIDs: same names, refreshed in place
    assert sorted(p.name for p in (tmp_path / "series").iterdir()) == first


def test_write_dataset_layouts_and_resume(tmp_path) -> None:
    flat = write_dataset(tmp_path / "flat", 2, size=32)
    assert [p.name for p in flat] == ["volume-0.nii.gz", "volume-1.nii.gz"]
    assert (tmp_path / "flat" / "segmentation-1.nii.gz").is_file()
    kaggle = write_dataset(tmp_path / "k", 2, size=32, layout="kaggle", dicom=True, start=49)
    assert kaggle == [
        tmp_path / "k/volume_pt1/volume-49.nii",
        tmp_path / "k/volume_pt2/volume-50.nii",
    ]
    assert (tmp_path / "k/segmentations/segmentation-50.nii").is_file()
    series = tmp_path / "k/dicom/volume-50"
    assert len(list(series.glob("*.dcm"))) == nib.load(kaggle[1]).shape[2]
    stamp = kaggle[0].stat().st_mtime_ns
    assert (
        write_dataset(tmp_path / "k", 2, size=32, layout="kaggle", dicom=True, start=49) == kaggle
    )
    assert kaggle[0].stat().st_mtime_ns == stamp, "an existing case must be skipped"
    with pytest.raises(ValueError, match="flat.*kaggle"):
        write_dataset(tmp_path, 1, layout="nested")


@pytest.mark.parametrize(
    "kwargs",
    [{"case_id": -1}, {"case_id": 0, "seed": -3}, {"case_id": 0, "size": 8}, {"case_id": 1.5}],
)
def test_bad_arguments_raise_value_error(kwargs) -> None:
    with pytest.raises(ValueError, match="expected an integer"):
        generate_case(**kwargs)
