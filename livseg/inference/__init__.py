"""Inference: a checkpoint segments whole CT volumes on their own grid (``Segmenter``)."""

from livseg.inference.postprocess import MIN_COMPONENT_FRACTION, keep_liver_components
from livseg.inference.segmenter import Segmentation, Segmenter

__all__ = [
    "MIN_COMPONENT_FRACTION", "Segmentation", "Segmenter", "keep_liver_components",
]  # fmt: skip
