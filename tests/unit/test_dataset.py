from pathlib import Path

import pytest

from livseg.io import assign_splits, discover_cases


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")


def test_flat_layout(tmp_path):
    for n in (0, 1, 10):
        _touch(tmp_path / f"volume-{n}.nii.gz")
        _touch(tmp_path / f"segmentation-{n}.nii.gz")
    _touch(tmp_path / "volume-7.nii")  # no mask: still a case, flagged later
    _touch(tmp_path / "notes.txt")
    cases = discover_cases(str(tmp_path))
    assert [c.case_id for c in cases] == [0, 1, 7, 10]
    assert cases[0].filename == "volume-0.nii.gz" and cases[0].dirname == str(tmp_path)
    assert cases[0].mask_filename == "segmentation-0.nii.gz"
    assert cases[2].mask_uri is None


def test_kaggle_layout_and_dicom_folders(tmp_path):
    _touch(tmp_path / "volume_pt1" / "volume-0.nii")
    _touch(tmp_path / "volume_pt2" / "volume-51.nii")
    _touch(tmp_path / "segmentations" / "segmentation-0.nii")
    _touch(tmp_path / "segmentations" / "segmentation-51.nii")
    _touch(tmp_path / "dicom" / "volume-3" / "a.dcm")
    _touch(tmp_path / "dicom" / "volume-0" / "b.dcm")  # the NIfTI volume-0 wins
    cases = {c.case_id: c for c in discover_cases(str(tmp_path))}
    assert sorted(cases) == [0, 3, 51]
    assert cases[51].dirname.endswith("volume_pt2")
    assert cases[51].mask_dirname.endswith("segmentations")
    assert cases[0].filename == "volume-0.nii"
    assert cases[3].filename == "volume-3" and cases[3].dirname.endswith("dicom")


def test_empty_folder_is_a_clear_error(tmp_path):
    _touch(tmp_path / "readme.txt")
    with pytest.raises(ValueError, match="no volume-N"):
        discover_cases(str(tmp_path))


def test_split_is_deterministic_proportional_and_stable():
    patients = [f"case-{i}" for i in range(131)]
    splits = assign_splits(patients)
    assert splits == assign_splits(list(reversed(patients)))
    counts = {s: list(splits.values()).count(s) for s in ("train", "test", "val")}
    assert 80 <= counts["train"] <= 103 and 16 <= counts["test"] <= 36 and 6 <= counts["val"] <= 20
    more = assign_splits(patients + [f"case-{i}" for i in range(131, 200)])
    assert all(more[p] == splits[p] for p in patients)  # adding cases moves nobody
    assert assign_splits(patients, seed=1) != splits


@pytest.mark.parametrize("n", [3, 5, 8, 13])
def test_small_sets_get_every_split(n):
    splits = assign_splits([f"case-{i}" for i in range(n)])
    assert set(splits.values()) == {"train", "test", "val"}
    assert list(splits.values()).count("train") >= n // 2


def test_patient_table_and_warnings(tmp_path):
    from livseg.data import assign_rows
    from livseg.data.config import PreprocessConfig
    from livseg.data.tasks import split_warnings
    from livseg.errors import UsageError
    from livseg.io import read_patients

    table = tmp_path / "patients.csv"
    table.write_text("case_id,patient\n1,MRN 7\n2,MRN 7\n3,MRN 8\n")
    patients = read_patients(str(table))
    assert patients[1] == patients[2] != patients[3] and patients[1].startswith("pt-")
    assert "MRN" not in "".join(patients.values())
    (tmp_path / "bad.csv").write_text("case,patient\n1,a\n")
    with pytest.raises(UsageError, match="case_id,patient"):
        read_patients(str(tmp_path / "bad.csv"))
    # an anonymised export: every series says PatientID "ANON"
    rows = [{"case_id": c, "patient": "pt-anon", "status": "ok"} for c in range(6)]
    assign_rows(rows, PreprocessConfig())
    assert len({r["split"] for r in rows}) == 1
    assert "holds 6 of 6 usable cases" in split_warnings(rows)[0]
    mixed = [{"case_id": c, "patient": f"pt-{c}", "status": "ok"} for c in range(6)]
    assert split_warnings(mixed) == []
