"""LiTS-like synthetic abdominal CT (HU, liver and tumour labels) and writers for whole
datasets as NIfTI pairs or DICOM series, for tests and the main job's embedded data."""

from livseg.synthetic.files import LAYOUTS, write_case_dicom, write_case_nifti, write_dataset
from livseg.synthetic.generator import FILE_AXCODES, SyntheticCase, generate_case

__all__ = [
    "FILE_AXCODES", "LAYOUTS", "SyntheticCase", "generate_case", "write_case_dicom",
    "write_case_nifti", "write_dataset",
]  # fmt: skip
