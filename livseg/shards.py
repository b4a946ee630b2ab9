"""Readers over a preprocessed shard folder: the record, Ray Datasets per split, torch batches.

Training (Ray Train's ``get_dataset_shard``) and evaluation read shards only through here, so
the layout written by ``livseg.data`` is known in two places: the writer and this reader.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from livseg import storage
from livseg.dataset import SPLITS

KINDS = ("slices", "volumes")
TENSOR_COLUMNS = ("image", "mask")


def read_record(uri: str) -> dict[str, Any]:
    """Load ``preprocess.json`` of a shard folder, refusing incomplete or incompatible output."""
    from livseg.data import RECORD_VERSION

    record_uri = storage.join(uri, "preprocess.json")
    if not storage.exists(record_uri):
        raise ValueError(
            f"{uri}: no preprocess.json; run jobs/preprocess.py --output {uri} first "
            "(an interrupted run resumes)"
        )
    record = json.loads(storage.read_text(record_uri))
    if record.get("record_version") != RECORD_VERSION:
        raise ValueError(
            f"{uri}: shards are version {record.get('record_version')}, this livseg reads "
            f"version {RECORD_VERSION}; preprocess the data again"
        )
    return record


def split_uri(uri: str, split: str, kind: str = "slices") -> str:
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: use one of {SPLITS}")
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r}: use one of {KINDS}")
    return storage.join(uri, kind, split)


def read_split(uri: str, split: str, kind: str = "slices", columns: list[str] | None = None):
    """A lazy ``ray.data.Dataset`` over one split's shards (``slices`` or ``volumes``).

    Tensor columns come back fixed-shape: ``image`` (C, H, W) float16 and ``mask`` (H, W) uint8
    for slices; ``image`` (1, X, Y, Z) and ``mask`` (X, Y, Z) for volumes.
    """
    import ray

    read_record(uri)
    folder = split_uri(uri, split, kind)
    if not storage.exists(folder):
        raise ValueError(f"{folder}: split {split!r} has no shards (no usable case in it)")
    fs, path = storage.filesystem(folder)
    return ray.data.read_parquet(path, filesystem=fs, columns=columns, file_extensions=["parquet"])


def torch_batches(ds, batch_size: int, *, local_shuffle_buffer_size: int | None = None, **kw):
    """Iterate ``(image float32 (B, C, H, W), mask int64 (B, H, W))`` torch tensors.

    Only the tensor columns travel (``iter_torch_batches`` cannot carry strings).
    """
    import torch

    for batch in ds.select_columns(list(TENSOR_COLUMNS)).iter_torch_batches(
        batch_size=batch_size, local_shuffle_buffer_size=local_shuffle_buffer_size, **kw
    ):
        yield batch["image"].to(torch.float32), batch["mask"].to(torch.int64)


def load_split_numpy(uri: str, split: str, kind: str = "slices") -> dict[str, np.ndarray]:
    """Read a whole split into memory without Ray (pyarrow only): column name → ndarray."""
    import pyarrow.parquet as pq

    read_record(uri)
    folder = split_uri(uri, split, kind)
    fs, _ = storage.filesystem(folder)
    tables = []
    for file_uri, _size in storage.list_files(folder):
        if file_uri.endswith(".parquet"):
            with fs.open_input_file(storage.filesystem(file_uri)[1]) as handle:
                tables.append(pq.read_table(handle))
    if not tables:
        raise ValueError(f"{folder}: split {split!r} has no shards")
    out: dict[str, np.ndarray] = {}
    for field in tables[0].schema:
        out[field.name] = np.concatenate(
            [_column_numpy(t.column(field.name), field) for t in tables]
        )
    return out


def _column_numpy(column, field) -> np.ndarray:
    """A Parquet column → ndarray; Ray's fixed-shape tensor columns → (N, *shape).

    Without ``ray.data`` imported the tensor extension type is unregistered and arrives as a
    list column whose field metadata carries the shape, so this works with pyarrow alone.
    """
    meta = field.metadata or {}
    shape_text = meta.get(b"ARROW:extension:metadata")
    chunks = []
    for chunk in column.chunks:
        if hasattr(chunk.type, "shape") and hasattr(chunk, "to_numpy"):  # registered by ray.data
            chunks.append(np.asarray(chunk.to_numpy()))
        elif shape_text is not None:
            shape = json.loads(shape_text)
            chunks.append(np.asarray(chunk.flatten()).reshape(len(chunk), *shape))
        else:
            chunks.append(chunk.to_numpy(zero_copy_only=False))
    return np.concatenate(chunks)
