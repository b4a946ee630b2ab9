"""A small generated "hospital archive" for the main job's nightly run: NIfTI studies in two
voxel orders, DICOM series (one split across two folders, as PACS exports often are), a file
that is not a study and a corrupt NIfTI — what the archive job must segment, skip or report."""

from __future__ import annotations

import shutil
from pathlib import Path

from livseg.io import nifti_bytes, storage
from livseg.synthetic.files import write_case_dicom
from livseg.synthetic.generator import check_int, generate_case

ARCHIVE_FIRST_CASE = 1000  # archive studies never share a case id with a training set


def write_archive(out: str | Path, *, nifti: int = 2, dicom: int = 2, seed: int = 0,
                  size: int = 128) -> dict[str, list[str]]:  # fmt: skip
    """Write the archive under ``out`` (kept if already there); returns the paths by kind:
    ``studies`` (NIfTI files and DICOM series folders, the first series split in two),
    ``corrupt`` (a truncated NIfTI the job must report) and ``other`` (a text file)."""
    check_int("nifti", nifti, 0)
    check_int("dicom", dicom, 0)
    out = Path(out)
    done = out / "README.txt"
    kinds: dict[str, list[str]] = {"studies": [], "corrupt": [], "other": [str(done)]}
    cases = [generate_case(ARCHIVE_FIRST_CASE + n, seed, size) for n in range(nifti + dicom)]
    for n, case in enumerate(cases[:nifti]):
        path = out / "nifti" / f"study-{n}" / "ct.nii.gz"
        kinds["studies"].append(str(path))
        if not done.exists():
            storage.write_bytes(str(path), nifti_bytes(case.ct, case.affine))
    for n, case in enumerate(cases[nifti:]):
        folder = out / "pacs" / f"series-{n}"
        kinds["studies"].append(str(folder))
        if done.exists():
            continue
        write_case_dicom(case, folder)
        if n == 0:  # half of the first series lands in another export folder
            moved = out / "pacs" / "export-2"
            moved.mkdir(parents=True, exist_ok=True)
            for f in sorted(folder.glob("*.dcm"))[1::2]:
                shutil.move(f, moved / f.name)
    corrupt = out / "nifti" / "broken" / "ct.nii.gz"
    kinds["corrupt"].append(str(corrupt))
    if not done.exists() and cases:
        good = nifti_bytes(cases[0].ct, cases[0].affine)
        storage.write_bytes(str(corrupt), good[: len(good) // 3])
        storage.write_bytes(str(done), b"A generated hospital archive (livseg main job).\n")
    return kinds
