"""LiTS-like synthetic abdominal CT (HU, liver and tumour labels) and writers for whole
datasets as NIfTI pairs or DICOM series, for tests and the main job's embedded data."""

from livseg.synthetic.anatomy import LIVER_HU, PHASES
from livseg.synthetic.archive import write_archive
from livseg.synthetic.files import LAYOUTS, write_case_dicom, write_case_nifti, write_dataset
from livseg.synthetic.generator import FILE_AXCODES, SyntheticCase, generate_case
from livseg.synthetic.reference import LITS_REFERENCE, measured_statistics

__all__ = [
    "FILE_AXCODES", "LAYOUTS", "LITS_REFERENCE", "LIVER_HU", "PHASES", "SyntheticCase",
    "generate_case", "measured_statistics", "write_archive", "write_case_dicom",
    "write_case_nifti", "write_dataset",
]  # fmt: skip
