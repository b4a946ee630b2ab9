"""Preprocessing: LiTS cases → Parquet shards with Ray Data, and readers over the shards.

``transforms`` (pure numpy in and out), ``slice_ops`` (the slice recipe as torch ops, shared
with inference), ``shards`` (the format and its version), ``tasks``
(one case's work), ``pipeline`` (the Ray Data job),
``datasets`` (the Ray Data sink and readers of shards), ``roi`` (the liver box a cascade's
tumour stage sees, and the shift of its HU to the case's liver).

Names load on first use (PEP 562): a Ray Data task that only decodes shards unpickles
``livseg.data.shards``, and importing this package eagerly would make every fresh worker
import torch first (≈ 2.5 s of its start on a 2-core node).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "livseg.data.config": ("PreprocessConfig",),
    "livseg.data.datasets": ("read_split", "split_sink", "torch_batches", "write_split_shards"),
    "livseg.data.pipeline": ("format_summary", "preprocess", "rows_per_file"),
    "livseg.data.roi": ("liver_box", "liver_shift", "roi_arrays", "shift_to_liver"),
    "livseg.data.shards": (
        "RECORD_VERSION", "load_split_numpy", "read_record", "split_uri", "write_split_tables",
    ),
    "livseg.data.slice_ops": ("bilateral_slices", "preprocess_slices", "resize_slices"),
    "livseg.data.tasks": (
        "assign_rows", "case_item", "case_slices", "inspect_case", "normalise_volumes",
    ),
    "livseg.data.transforms": (
        "LABEL_MAPS", "LIVER", "STRUCTURES", "TUMOUR", "IntensityStats", "bounding_box",
        "process_slice", "process_slices", "resample_to_grid", "slab_indices", "slice_samples",
        "stats_from_histogram", "volume_grid", "zscore",
    ),
}  # fmt: skip
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'livseg.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
