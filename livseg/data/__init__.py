"""Preprocessing: LiTS cases → Parquet shards with Ray Data, and readers over the shards.

``transforms`` (pure numpy in and out), ``slice_ops`` (the slice recipe as torch ops, shared
with inference), ``shards`` (the format and its version), ``tasks``
(one case's work), ``pipeline`` (the Ray Data job),
``datasets`` (the Ray Data sink and readers of shards), ``roi`` (the liver box a cascade's
tumour stage sees).
"""

from livseg.data.config import PreprocessConfig
from livseg.data.datasets import read_split, split_sink, torch_batches
from livseg.data.pipeline import format_summary, preprocess, rows_per_file
from livseg.data.roi import liver_box, roi_arrays
from livseg.data.shards import (
    RECORD_VERSION, load_split_numpy, read_record, split_uri, write_split_tables,
)
from livseg.data.slice_ops import bilateral_slices, preprocess_slices, resize_slices
from livseg.data.tasks import assign_rows, case_item, case_slices, inspect_case, normalise_volumes
from livseg.data.transforms import (
    LABEL_MAPS, LIVER, STRUCTURES, TUMOUR, IntensityStats, bounding_box, process_slice,
    process_slices, resample_to_grid, slab_indices, slice_samples, stats_from_histogram,
    volume_grid, zscore,
)

__all__ = [
    "LABEL_MAPS", "LIVER", "RECORD_VERSION", "STRUCTURES", "TUMOUR", "IntensityStats",
    "PreprocessConfig", "assign_rows", "bilateral_slices", "bounding_box", "case_item",
    "case_slices", "format_summary", "inspect_case", "liver_box", "load_split_numpy",
    "normalise_volumes", "preprocess", "preprocess_slices", "process_slice", "process_slices",
    "read_record", "read_split", "resample_to_grid", "resize_slices", "roi_arrays",
    "rows_per_file", "slab_indices", "slice_samples", "split_sink", "split_uri",
    "stats_from_histogram", "torch_batches", "volume_grid", "write_split_tables", "zscore",
]  # fmt: skip
