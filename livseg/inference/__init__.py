"""Inference: a checkpoint segments whole CT volumes on their own grid (``Segmenter``); per-study
statistics and the review flag (``analyse_study``); a two-stage model (``Cascade``, loaded by
``load_segmenter``, bundled by ``write_cascade``)."""

from livseg.inference.cascade import Cascade, load_segmenter, write_cascade
from livseg.inference.growth import grow_lesions
from livseg.inference.lesions import LesionRule, clean_lesions
from livseg.inference.postprocess import (
    MIN_COMPONENT_FRACTION,
    keep_confirmed_components,
    keep_liver_components,
)
from livseg.inference.qa import ReviewLimits, cut_faces, pass_agreement, review
from livseg.inference.segmenter import Segmentation, Segmenter
from livseg.inference.statistics import study_statistics
from livseg.inference.study import StudyResult, analyse_study, shifted_agreement
from livseg.inference.thumbnail import key_slice, thumbnail, thumbnail_png

__all__ = [
    "MIN_COMPONENT_FRACTION", "Cascade", "LesionRule", "ReviewLimits", "Segmentation",
    "Segmenter", "StudyResult", "analyse_study", "clean_lesions", "cut_faces", "grow_lesions",
    "keep_confirmed_components", "keep_liver_components", "key_slice", "load_segmenter",
    "pass_agreement", "review", "shifted_agreement", "study_statistics", "thumbnail",
    "thumbnail_png", "write_cascade",
]  # fmt: skip
