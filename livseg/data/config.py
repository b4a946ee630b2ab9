"""``PreprocessConfig``: everything that decides what a shard holds (``preprocess.json``)."""

from __future__ import annotations

from dataclasses import dataclass

from livseg.errors import UsageError


@dataclass(frozen=True)
class PreprocessConfig:
    """Everything that decides what a shard holds; stored in ``preprocess.json``."""

    size: int = 256  # in-plane output size (pixels)
    context: int = 2  # K neighbouring slices on each side: C = 2K + 1 channels
    window: tuple[float, float] = (-200.0, 250.0)  # HU clip window (abdominal soft tissue)
    bilateral: bool = True  # the study's bilateral filter against scanner noise
    bilateral_diameter: int = 5  # OpenCV neighbourhood diameter (pixels)
    bilateral_sigma_color: float = 25.0  # range kernel σ (HU)
    bilateral_sigma_space: float = 3.0  # spatial kernel σ (pixels)
    label_mode: str = "multiclass"  # "multiclass" 0/1/2 or the study's "binary" liver+tumour
    margin: int = 4  # slices kept above and below the liver
    other_fraction: float = 0.1  # fraction of the other (liver-free) training slices kept;
    # validation and test cases keep every slice
    volume_size: tuple[int, int, int] = (64, 64, 64)  # fixed 3-D grid for the V-Net (X, Y, Z)
    split: tuple[float, float, float] = (0.7, 0.2, 0.1)  # train / test / val, as in the study
    seed: int = 0
    shard_mb: int = 128  # target Parquet file size: a few big files per split feed a GPU
    # Tumour stage of a cascade: each case cropped to its reference liver's box (in-plane square,
    # grown by roi_margin × side, ≥ 4 px; z grown by margin + context slices) before slicing.
    roi: bool = False
    roi_margin: float = 0.15
    # ROI shards: each case's HU shifted so that its liver's median is 100 HU (livseg.data.roi:
    # the tumour stage then sees tumours relative to their own liver in any contrast phase).
    roi_liver_shift: bool = True
    # CSV (local or s3://) with columns case_id,patient: cases of one patient share a split.
    # Without it a DICOM series' PatientID groups cases; other cases are a patient each.
    patients: str = ""

    def __post_init__(self) -> None:
        if self.size < 16 or self.size % 16:
            raise UsageError(f"size={self.size}: use a multiple of 16, at least 16 (e.g. 256)")
        if self.context < 0:
            raise UsageError(f"context={self.context}: must be 0 or more neighbouring slices")
        if not self.window[0] < self.window[1]:
            raise UsageError(f"window={self.window}: low must be below high (HU)")
        if self.label_mode not in ("multiclass", "binary"):
            raise UsageError(f"label_mode={self.label_mode!r}: use 'multiclass' or 'binary'")
        if not 0.0 <= self.other_fraction <= 1.0:
            raise UsageError(f"other_fraction={self.other_fraction}: must be within [0, 1]")
        if any(v < 16 or v % 16 for v in self.volume_size):
            raise UsageError(f"volume_size={self.volume_size}: each side a multiple of 16")
        if len(self.split) != 3 or min(self.split) < 0 or abs(sum(self.split) - 1) > 1e-6:
            raise UsageError(f"split={self.split}: three non-negative fractions summing to 1")
        if not 0 <= self.roi_margin <= 1:
            raise UsageError(f"roi_margin={self.roi_margin}: a share of the liver box, 0 to 1")
        if self.bilateral_diameter < 1 or self.shard_mb < 1 or self.margin < 0:
            raise UsageError("bilateral_diameter and shard_mb must be ≥ 1, margin ≥ 0")

    @property
    def roi_z_margin(self) -> int:
        """Slices kept above and below the liver in an ROI crop: slabs at the edge stay real."""
        return self.margin + self.context

    @property
    def channels(self) -> int:
        return 2 * self.context + 1
