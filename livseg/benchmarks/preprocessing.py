"""Preprocessing side by side: the Ray Data job (``livseg.data.preprocess``) against a plain
single-process loop that calls the same per-case functions and writes the same Parquet; the
peak memory of one worker process per case; throughput on a 2-node cluster at 1 and 2 worker
processes."""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from livseg.benchmarks.windows import interleaved, paired_ratio, rates, ratio_bounds, summary
from livseg.config import to_dict
from livseg.data import (
    PreprocessConfig,
    assign_rows,
    case_item,
    case_slices,
    inspect_case,
    normalise_volumes,
    rows_per_file,
    stats_from_histogram,
    write_split_tables,
)  # fmt: skip
from livseg.io import discover_cases, storage


def serial_preprocess(input_uri: str, output: Path, cfg: PreprocessConfig) -> int:
    """The baseline: one process, a for-loop over cases, same functions and shard format.
    Returns the slices written."""
    rows = [inspect_case(case_item(c), to_dict(cfg)) for c in discover_cases(input_uri)]
    assign_rows(rows, cfg)
    ok = [r for r in rows if r["status"] == "ok"]
    hist = np.sum([r["histogram"] for r in ok if r["split"] == "train"], axis=0)
    stats = stats_from_histogram(hist, cfg.window[0]).__dict__
    keys = ("case_id", "image_uri", "mask_uri", "split")
    written, pending, limit = 0, [], rows_per_file(cfg, "slices")
    for i, r in enumerate(ok):
        # Flush like the Ray sink does (about rows_per_file rows a file), never all in memory.
        batch = {k: np.array([r[k]]) for k in keys}
        pending.append(case_slices(batch, to_dict(cfg), stats, str(output / "slices" / "_failed")))
        if sum(map(len, pending)) >= limit or i == len(ok) - 1:
            written += sum(
                write_split_tables(str(output / "slices"), pa.concat_tables(pending)).values()
            )
            pending = []
    grids = {k: np.stack([r[k] for r in ok]) for k in ("case_id", "grid_hu", "grid_mask")}
    splits = {int(r["case_id"]): r["split"] for r in ok}
    write_split_tables(str(output / "volumes"), normalise_volumes(grids, stats, splits))
    return written


def _file_bytes(uri: str) -> int:
    fs, path = storage.filesystem(uri)
    info = fs.get_file_info(path)
    if info.size is not None and info.is_file:
        return int(info.size)
    return sum(size for _, size in storage.list_files(uri))  # a DICOM series folder


def _status_bytes(field: str) -> int | None:
    """``VmRSS`` / ``VmHWM`` of this process in bytes (Linux), else None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def case_peak_memory(row: dict[str, Any], cfg_dict: dict[str, Any]) -> dict[str, Any]:
    """Run in a fresh worker process: one case through both passes (``inspect_case`` then
    ``case_slices``, as a Ray Data worker runs them) once to warm up (lazy imports, thread
    pools), then again measured. Bytes: the worker's RSS after the imports, before the
    measured run and its peak during it (Linux ``VmHWM``, reset first), and the decoded CT
    volume (HU float32)."""
    import resource

    from livseg.io import read_case

    imports = _status_bytes("VmRSS")
    volume, labels = read_case(row["image_uri"], row["mask_uri"] or None)
    decoded = int(volume.array.nbytes)
    del volume, labels
    _both_passes(row, cfg_dict)
    _trim_heap()  # else the warm-up's freed heap holds the next run's arrays: no growth shows
    before = _status_bytes("VmRSS")
    try:  # Linux: reset the high-water mark to the current RSS, so the peak is this run's
        Path("/proc/self/clear_refs").write_text("5")
        method = "VmHWM reset before the measured run"
    except OSError:
        method = "ru_maxrss (includes the warm-up run)"
    _both_passes(row, cfg_dict)
    peak = _status_bytes("VmHWM") if method.startswith("VmHWM") else None
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
    if imports is None or before is None or peak <= before:
        raise RuntimeError(f"no usable peak-memory reading ({method}: before {before}, "
                           f"peak {peak}): the measured run did not raise the peak")  # fmt: skip
    return {"imports": imports, "before": before, "peak": peak, "decoded": decoded,
            "method": method}  # fmt: skip


def _trim_heap() -> None:
    """Return freed heap memory to the OS (glibc ``malloc_trim``; elsewhere nothing)."""
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _both_passes(row: dict[str, Any], cfg_dict: dict[str, Any]) -> int:
    inspected = inspect_case(row, cfg_dict)
    if inspected["status"] != "ok":
        raise RuntimeError(inspected["error"])
    low = cfg_dict["window"][0]
    stats = stats_from_histogram(inspected["histogram"], low).__dict__
    batch = {k: np.array([inspected[k]]) for k in ("case_id", "image_uri", "mask_uri")}
    batch["split"] = np.array(["train"])
    with tempfile.TemporaryDirectory() as tmp:
        return len(case_slices(batch, cfg_dict, stats, tmp))


def peak_memory(raw: str, cfg: PreprocessConfig, repeats: int) -> dict[str, Any]:
    """``case_peak_memory`` of the largest case, ``repeats`` times, each in a fresh Ray worker
    (side by side: a process's RSS is its own). The ratio: the peak's growth over the
    worker's RSS before the case, per byte of the decoded volume; the worker's own footprint
    (imports) is reported beside it."""
    import ray

    measure = ray.remote(max_calls=1, num_cpus=1, max_retries=0)(case_peak_memory)
    largest = max(discover_cases(raw), key=lambda c: _file_bytes(c.image_uri))
    rows = ray.get([measure.remote(case_item(largest), to_dict(cfg)) for _ in range(repeats)])
    mb = 1e6
    return {
        "case_id": largest.case_id, "method": rows[0]["method"],
        "decoded_volume_mb": rows[0]["decoded"] / mb,
        "worker_after_imports_mb": summary([r["imports"] / mb for r in rows]),
        "worker_peak_mb": summary([r["peak"] / mb for r in rows]),
        "peak_growth_mb": summary([(r["peak"] - r["before"]) / mb for r in rows]),
        "peak_vs_volume": summary([(r["peak"] - r["before"]) / r["decoded"] for r in rows]),
        "peak_vs_volume_target_max": 3.0,
    }  # fmt: skip


def _runner(
    fn: Callable[[str, Path, PreprocessConfig], int], raw: str, root: Path,
    cfg: PreprocessConfig, cases: int, slices: list[int],
) -> Callable[[], float]:  # fmt: skip
    """A window function: preprocess into a fresh folder (removed with the benchmark's
    temporary folder, outside the timed windows); the slices each run wrote are appended to
    ``slices``."""
    count = itertools.count()

    def run() -> float:
        slices.append(fn(raw, root / f"run-{next(count)}", cfg))
        return cases

    return run


def _ray_preprocess(raw: str, out: Path, cfg: PreprocessConfig) -> int:
    from livseg.data import preprocess

    record = preprocess(raw, str(out), cfg)
    return sum(s["slices"] for s in record["splits"].values())


def scaling(raw: str, cfg: PreprocessConfig, cases: int, repeats: int, tmp: Path) -> dict:
    """Ray Data cases/s on a 2-node ``ray.cluster_utils.Cluster`` of 1-CPU nodes: the head
    alone (1 worker process), then with the second node (2). The caller's Ray connection is
    closed first; call ``init_ray`` again afterwards."""
    import ray
    from ray.cluster_utils import Cluster

    ray.shutdown()
    head = {"num_cpus": 1, "include_dashboard": False}
    nodes = Cluster(initialize_head=True, head_node_args=head)
    try:
        ray.init(address=nodes.address, log_to_driver=False)
        run = _runner(_ray_preprocess, raw, tmp / "scaling", cfg, cases, [])
        one = rates(run, repeats)
        nodes.add_node(num_cpus=1)
        nodes.wait_for_nodes()
        two = rates(run, repeats)  # its warm-up starts workers on the new node
    finally:
        ray.shutdown()
        nodes.shutdown()
    return {
        "nodes": 2,
        "cpus_per_node": 1,
        "one_worker_cases_per_s": summary(one),
        "two_workers_cases_per_s": summary(two),
        "efficiency": ratio_bounds(two, [2 * r for r in one]),
    }


def _warm(row: dict[str, Any]) -> dict[str, Any]:
    from livseg.data import case_slices  # noqa: F401 - imports torch, cv2, nibabel as a task does

    return row


def bench_preprocess(
    cases: int, size: int, repeats: int, seed: int = 0, data: str | None = None,
    with_scaling: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """Ray Data vs the serial loop on ``data`` (a LiTS folder) or on ``cases`` volumes
    generated at ``size`` px, interleaved window by window: cases/s and input MB/s (files as
    stored), the paired ratio, one worker's peak memory per case and (``with_scaling``) the
    2-node scaling."""
    import os

    import ray

    from livseg.runtime import init_ray
    from livseg.synthetic import write_dataset

    init_ray()
    joined = bool(os.environ.get("RAY_ADDRESS"))
    cpus = ray.cluster_resources().get("CPU")
    cfg = PreprocessConfig(size=min(size, 256), seed=seed)
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        raw = data or str(tmp / "raw")
        if data is None:
            write_dataset(Path(raw), cases, seed=seed, size=size)
        found = discover_cases(raw)
        cases = len(found)
        mb = sum(_file_bytes(c.image_uri) + (_file_bytes(c.mask_uri) if c.mask_uri else 0)
                 for c in found) / 1e6  # fmt: skip
        # Warm the worker pool so both sides start from running processes with our modules
        # imported (the serial loop runs in this process, which has them already).
        ray.data.range(8, override_num_blocks=8).map(_warm).materialize()
        slices: dict[str, list[int]] = {"ray_data": [], "serial_loop": []}
        runs = {
            "ray_data": _runner(_ray_preprocess, raw, tmp / "ray", cfg, cases, slices["ray_data"]),
            "serial_loop": _runner(
                serial_preprocess, raw, tmp / "serial", cfg, cases, slices["serial_loop"]
            ),
        }
        windows = interleaved(runs, repeats)
        if len(set(slices["ray_data"] + slices["serial_loop"])) != 1:
            raise RuntimeError(f"slices written differ between runs or sides: {slices}")
        memory = peak_memory(raw, cfg, repeats)
        scaled = {"skipped": "joined an existing cluster (RAY_ADDRESS)"}
        if with_scaling and not joined:
            scaled = scaling(raw, cfg, cases, repeats, tmp)
            init_ray()
    return {
        "cases": cases, "volume_size": size, "slice_size": cfg.size,
        "slices": slices["ray_data"][0],
        "input_mb": round(mb, 2), "cpus": cpus,
        "ray_data_cases_per_s": summary(windows["ray_data"]),
        "serial_loop_cases_per_s": summary(windows["serial_loop"]),
        "ray_data_mb_per_s": summary([r * mb / cases for r in windows["ray_data"]]),
        "serial_loop_mb_per_s": summary([r * mb / cases for r in windows["serial_loop"]]),
        "speedup": paired_ratio(windows["ray_data"], windows["serial_loop"]),
        "speedup_target": 1.6,
        "memory": memory,
        "scaling": scaled,
    }  # fmt: skip
