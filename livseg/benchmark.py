"""Side-by-side throughput measurements; ratios, never absolute targets in tests.

``preprocess``: the Ray Data job (``livseg.data.preprocess``) against a plain single-process
loop that calls the same per-case functions over the same cases and writes the same Parquet.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from livseg.config import PreprocessConfig, to_dict
from livseg.dataset import SPLITS, discover_cases
from livseg.preprocess import stats_from_histogram
from livseg.shards import PARQUET_ARGS


def serial_preprocess(input_uri: str, output: Path, cfg: PreprocessConfig) -> int:
    """The baseline: one process, a for-loop over cases; returns slices written."""
    from livseg.data import _assign, _case_item, case_slices, inspect_case

    rows = [inspect_case(_case_item(c), to_dict(cfg)) for c in discover_cases(input_uri)]
    _assign(rows, cfg)
    ok = [r for r in rows if r["status"] == "ok"]
    hist = np.sum([r["histogram"] for r in ok if r["split"] == "train"], axis=0)
    stats = stats_from_histogram(hist, cfg.window[0]).__dict__
    total = 0
    for split in SPLITS:
        batches = []
        for r in (r for r in ok if r["split"] == split):
            one = {k: np.array([r[k]]) for k in ("case_id", "image_uri", "mask_uri")}
            batches.append(case_slices(one, to_dict(cfg), stats))
        if not batches:
            continue
        table = pa.concat_tables(batches)
        (output / split).mkdir(parents=True, exist_ok=True)
        pq.write_table(table, output / split / "part-0.parquet", row_group_size=len(table),
                       **PARQUET_ARGS)  # fmt: skip
        total += len(table)
    return total


def _warm(row: dict[str, Any]) -> dict[str, Any]:
    import livseg.data  # noqa: F401 - imports cv2, nibabel, scipy like a real task

    return row


def bench_preprocess(cases: int, size: int, seed: int = 0) -> dict[str, Any]:
    """Generate ``cases`` volumes at ``size`` px, time Ray Data vs the serial loop."""
    import ray

    from livseg.data import preprocess
    from livseg.runtime import init_ray
    from livseg.synthetic import write_dataset

    init_ray()
    cfg = PreprocessConfig(size=min(size, 256), seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp, "raw")
        write_dataset(raw, cases, seed=seed, size=size)
        # Warm the worker pool so both sides start from running processes with our modules
        # imported (the serial loop runs in this process, which has them already).
        ray.data.range(8, override_num_blocks=8).map(_warm).materialize()
        t0 = time.perf_counter()
        record = preprocess(str(raw), str(Path(tmp, "ray")), cfg)
        ray_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        slices = serial_preprocess(str(raw), Path(tmp, "serial"), cfg)
        serial_s = time.perf_counter() - t0
    ray_slices = sum(s["slices"] for s in record["splits"].values())
    if ray_slices != slices:
        raise RuntimeError(f"Ray wrote {ray_slices} slices, the loop {slices}: not comparable")
    return {
        "stage": "preprocess",
        "cases": cases,
        "volume_size": size,
        "slice_size": cfg.size,
        "slices": slices,
        "cpus": ray.cluster_resources().get("CPU"),
        "ray_data_s": round(ray_s, 2),
        "serial_loop_s": round(serial_s, 2),
        "speedup": round(serial_s / ray_s, 2),
        "target": 1.6,
    }


def write_result(result: dict[str, Any], out_dir: str = ".") -> Path:
    path = Path(out_dir, f"benchmark-{result['stage']}.json")
    path.write_text(json.dumps(result, indent=2))
    return path
