"""Writing synthetic cases to disk: NIfTI pairs, DICOM series, whole LiTS-layout datasets."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from livseg.errors import UsageError
from livseg.io import nifti_bytes, storage
from livseg.synthetic.generator import SyntheticCase, check_int, generate_case

LAYOUTS = ("flat", "kaggle")
VOLUMES_PER_PART = 50  # Kaggle LiTS: volume_pt1 .. volume_pt5


def write_case_nifti(case: SyntheticCase, volume_path: str | Path, mask_path: str | Path) -> None:
    """Write CT (int16) and labels (uint8) as .nii or .nii.gz; qform = sform = affine, code 1."""
    pairs = [(case.ct, str(volume_path)), (case.labels, str(mask_path))]
    for _, path in pairs:
        if not path.endswith((".nii", ".nii.gz")):
            raise UsageError(f"{path}: expected a file name ending in .nii or .nii.gz")
    for array, path in pairs:
        data = nifti_bytes(array, case.affine, compress=path.endswith(".gz"))
        storage.write_bytes(path, data)


def write_case_dicom(
    case: SyntheticCase, folder: str | Path, *, patient_id: str | None = None
) -> None:
    """Write the CT as a DICOM series, one file per slice along axis 2, files named by UID hash.

    Pixel (row r, column c) of slice k is ``ct[c, r, k]``; stored unsigned with intercept -1024.
    """
    folder, pid = Path(folder), f"SYN{case.case_id:04d}" if patient_id is None else patient_id
    if not 0 < len(pid) <= 64 or "\\" in pid:
        raise UsageError(f"patient_id={pid!r}: expected 1-64 characters without a backslash")
    key = ["livseg", str(case.truth.get("seed", 0)), str(case.case_id), str(case.ct.shape)]
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ case.affine  # DICOM patient space is LPS
    iop = np.concatenate([lps[:3, 0] / case.spacing[0], lps[:3, 1] / case.spacing[1]])
    fmt = lambda vals: [f"{float(v):.10g}" for v in vals]  # noqa: E731  (DS: at most 16 chars)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = CTImageStorage
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    uids = (generate_uid(entropy_srcs=[*key, p]) for p in ("study", "series", "frame"))
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = uids
    ds.update(
        dict(
            Modality="CT", PatientID=pid, PatientName="Synthetic^Case", StudyID="1",
            SeriesNumber=1, ImageType=["ORIGINAL", "PRIMARY", "AXIAL"], RescaleType="HU",
            ImageOrientationPatient=fmt(iop), PixelSpacing=fmt(case.spacing[1::-1]),
            SliceThickness=fmt(case.spacing[2:])[0], SpacingBetweenSlices=fmt(case.spacing[2:])[0],
            Rows=case.ct.shape[1], Columns=case.ct.shape[0], SamplesPerPixel=1,
            PhotometricInterpretation="MONOCHROME2", PixelRepresentation=0, BitsAllocated=16,
            BitsStored=12, HighBit=11, RescaleIntercept="-1024", RescaleSlope="1",
            WindowCenter="40", WindowWidth="400",
        )
    )  # fmt: skip
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        os.chmod(tmp, 0o755)
        for k in range(case.ct.shape[2]):
            sop = generate_uid(entropy_srcs=[*key, "sop", str(k)])
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop
            pos = (lps @ [0, 0, k, 1])[:3]
            ds.InstanceNumber, ds.ImagePositionPatient, ds.SliceLocation = (
                k + 1,
                fmt(pos),
                fmt(pos)[2],
            )
            ds.PixelData = (case.ct[:, :, k].T.astype(np.int32) + 1024).astype("<u2").tobytes()
            path = tmp / (hashlib.sha1(sop.encode()).hexdigest()[:20] + ".dcm")
            if int(pydicom.__version__.split(".")[0]) >= 3:
                ds.save_as(path, enforce_file_format=True)
            else:  # pydicom 2.x
                ds.is_little_endian, ds.is_implicit_VR = True, False
                ds.save_as(path, write_like_original=False)
        if folder.exists():  # refresh in place: the same UIDs give the same names
            for f in tmp.iterdir():
                os.replace(f, folder / f.name)
            tmp.rmdir()
        else:
            os.replace(tmp, folder)  # the folder appears complete or not at all
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_dataset(
    out: str | Path,
    cases: int,
    *,
    seed: int = 0,
    size: int = 128,
    layout: str = "flat",
    dicom: bool = False,
    start: int = 0,
) -> list[Path]:
    """Write cases start..start+cases-1 and return their volume paths (existing ones are kept).

    flat: out/volume-N.nii.gz, out/segmentation-N.nii.gz. kaggle: out/volume_ptP/volume-N.nii
    (50 per part) and out/segmentations/segmentation-N.nii. dicom: also out/dicom/volume-N/.
    """
    if layout not in LAYOUTS:
        raise UsageError(f"layout={layout!r}: expected one of {', '.join(LAYOUTS)}")
    check_int("cases", cases, 0)
    check_int("start", start, 0)
    check_int("size", size, 32, 1024)
    out, volumes = Path(out), []
    for n in range(start, start + cases):
        if layout == "flat":
            vol, seg = out / f"volume-{n}.nii.gz", out / f"segmentation-{n}.nii.gz"
        else:
            vol = out / f"volume_pt{n // VOLUMES_PER_PART + 1}" / f"volume-{n}.nii"
            seg = out / "segmentations" / f"segmentation-{n}.nii"
        dcm = out / "dicom" / f"volume-{n}"
        if not (vol.exists() and seg.exists() and (not dicom or dcm.is_dir())):
            case = generate_case(n, seed, size)
            if dicom:
                write_case_dicom(case, dcm)
            write_case_nifti(case, vol, seg)  # last: its files mark the case as done
        volumes.append(vol)
    return volumes
