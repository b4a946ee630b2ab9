"""Reading and writing: local paths and ``s3://`` (``storage``), CT volumes and masks in a
canonical grid (``Volume``; NIfTI and DICOM readers) and LiTS-layout case discovery."""

from livseg.io import storage
from livseg.io.cases import (
    INDEX_COLUMNS, SPLITS, VOLUME_RE, Case, assign_splits, discover_cases, patient_key,
    read_patients,
)
from livseg.io.conditional import read_with_token, write_bytes_if
from livseg.io.dicom import read_dicom_files, read_dicom_series
from livseg.io.dicom_seg import dicom_seg_bytes, write_dicom_seg
from livseg.io.nifti import (
    NIFTI_SUFFIXES, decode_nifti, mask_nifti_bytes, nifti_bytes, nifti_volume, read_nifti,
    write_mask,
)
from livseg.io.reader import align_labels, read_case, read_volume
from livseg.io.volume import (
    Volume, VolumeError, VolumeTooLarge, describe_grid, same_grid, to_canonical, to_source_grid,
)

__all__ = [
    "INDEX_COLUMNS", "NIFTI_SUFFIXES", "SPLITS", "VOLUME_RE", "Case", "Volume", "VolumeError",
    "VolumeTooLarge", "align_labels", "assign_splits", "decode_nifti", "describe_grid",
    "dicom_seg_bytes", "discover_cases", "mask_nifti_bytes", "nifti_bytes", "nifti_volume",
    "patient_key", "read_case", "read_dicom_files", "read_dicom_series", "read_nifti",
    "read_patients", "read_volume", "read_with_token", "same_grid", "storage", "to_canonical",
    "to_source_grid", "write_bytes_if", "write_dicom_seg", "write_mask",
]  # fmt: skip
