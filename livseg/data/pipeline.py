"""The preprocessing job: LiTS cases → Parquet shards with Ray Data (``preprocess``).

Pass 1 reads every case once in parallel (validation, index facts, liver histogram, the V-Net
grid); the driver splits the usable cases by patient and sums the training split's histograms
into the z-score statistics. Pass 2 turns each split's cases into 2.5-D slice rows; a case that
fails there is marked failed in the index and left out of every shard. Splits are written
concurrently, each into a few big Parquet files with fixed-shape tensor columns (what keeps a
GPU fed), and each split folder gets a ``_livseg_done.json`` marker so a rerun skips what is
finished. ``preprocess.json`` is written last: its presence means the whole output is complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa

import livseg
from livseg.config import to_dict
from livseg.data.config import PreprocessConfig
from livseg.data.datasets import write_split_shards
from livseg.data.shards import RECORD_VERSION, parquet_rows, table_bytes
from livseg.data.tasks import (
    assign_rows,
    case_item,
    case_slices,
    inspect_case,
    normalise_volumes,
    split_warnings,
)
from livseg.data.transforms import LABEL_MAPS, IntensityStats, stats_from_histogram
from livseg.errors import UsageError
from livseg.io import INDEX_COLUMNS, SPLITS, Case, discover_cases, read_patients, storage

log = logging.getLogger(__name__)
DONE_MARKER = "_livseg_done.json"
FAILURES = "_failed"  # pass 2 leaves one JSON per failed case here


def _fingerprint(input_uri: str, cfg: PreprocessConfig) -> str:
    listing = storage.list_files(input_uri)
    table = storage.read_text(cfg.patients) if cfg.patients else ""  # its content, not its name
    payload = json.dumps(
        [RECORD_VERSION, livseg.__version__, to_dict(cfg), listing, table], sort_keys=True
    ).encode()
    return hashlib.sha256(payload).hexdigest()


def _done(folder: str, fingerprint: str, case_ids: list[int] | None = None) -> bool:
    """True when ``folder`` was completed for this input and config (and these cases)."""
    marker = storage.join(folder, DONE_MARKER)
    if not storage.exists(marker):
        return False
    done = json.loads(storage.read_text(marker))
    return done.get("fingerprint") == fingerprint and case_ids in (None, done.get("cases"))


def rows_per_file(cfg: PreprocessConfig, kind: str) -> int:
    """Rows per Parquet file (and row group) so a file holds about ``cfg.shard_mb`` MiB."""
    if kind == "slices":
        row_bytes = cfg.size * cfg.size * (2 * cfg.channels + 1)
    else:
        row_bytes = int(np.prod(cfg.volume_size)) * 3
    return max(1, cfg.shard_mb * 2**20 // row_bytes)


def _write_kind(ds: Any, folder: str, rows: int, fingerprint: str, case_ids: list[int]) -> None:
    """Write one shard kind (``slices`` or ``volumes``) for every split, then mark it done
    for the cases it was given."""
    storage.delete_dir(folder)  # what an interrupted earlier run left behind
    write_split_shards(ds, folder, rows)  # cases in the order given, not as tasks finish
    marker = {"fingerprint": fingerprint, "cases": case_ids}
    storage.write_text(storage.join(folder, DONE_MARKER), json.dumps(marker))


def _index_table(rows: list[dict[str, Any]]) -> pa.Table:
    def plain(value: Any) -> Any:
        return value.tolist() if isinstance(value, np.ndarray) else value

    return pa.table({name: [plain(r[name]) for r in rows] for name in INDEX_COLUMNS})


def preprocess(input_uri: str, output_uri: str, cfg: PreprocessConfig) -> dict[str, Any]:
    """Run the whole preprocessing job; return the preprocess record (also in preprocess.json)."""
    from livseg.runtime import init_ray

    started = time.time()
    patients = read_patients(cfg.patients) if cfg.patients else None
    cases = discover_cases(input_uri, patients)  # input and output problems surface first
    storage.check_writable(output_uri)
    init_ray()
    with _all_cpus_for_tasks():
        return _preprocess(input_uri, output_uri, cfg, cases, started)


@contextlib.contextmanager
def _all_cpus_for_tasks():
    """Let per-case tasks use every CPU.

    Ray Data reserves part of the cluster per operator by default; on a 2-CPU machine that
    left one case task running at a time (measured: 8 one-second tasks took 6.9 s instead of
    4.1 s). Our pipelines are short chains of CPU-bound maps, so the reservation only idles
    cores. Restored afterwards: the setting is process-wide.
    """
    from ray.data import DataContext

    ctx = DataContext.get_current()
    before = ctx.op_resource_reservation_enabled
    ctx.op_resource_reservation_enabled = False
    try:
        yield
    finally:
        ctx.op_resource_reservation_enabled = before


def _preprocess(
    input_uri: str, output_uri: str, cfg: PreprocessConfig, cases: list[Case], started: float
) -> dict[str, Any]:
    import ray

    fingerprint = _fingerprint(input_uri, cfg)
    record_uri = storage.join(output_uri, "preprocess.json")
    if storage.exists(record_uri):
        record = json.loads(storage.read_text(record_uri))
        if record.get("fingerprint") == fingerprint:
            record["resumed"] = "already complete"
            return record
    items = [case_item(c) for c in cases]
    inspected = ray.data.from_items(items, override_num_blocks=len(items))
    # In the cases' order, as the volume shards are written from it (``write_split_shards``).
    inspected.context.execution_options.preserve_order = True
    inspected = inspected.map(inspect_case, fn_kwargs={"cfg_dict": to_dict(cfg)}).materialize()
    rows = inspected.select_columns([*INDEX_COLUMNS, "histogram", "image_uri", "mask_uri"])
    rows = sorted(rows.take_all(), key=lambda r: r["case_id"])
    assign_rows(rows, cfg)
    warnings = split_warnings(rows)
    if patients := read_patients(cfg.patients) if cfg.patients else None:
        unknown = sorted(set(patients) - {int(r["case_id"]) for r in rows})
        if unknown:
            warnings.append(f"patients={cfg.patients} names cases {unknown} that are not found")
    for warning in warnings:
        log.warning(warning)
    train_hist = [r["histogram"] for r in rows if r["split"] == "train" and r["status"] == "ok"]
    if not train_hist:
        raise UsageError(f"{input_uri}: no usable training case; see index errors: {_errors(rows)}")
    stats = stats_from_histogram(np.sum(train_hist, axis=0), cfg.window[0])
    stats_dict = stats.__dict__
    slice_folder = storage.join(output_uri, "slices")
    failures_uri = storage.join(slice_folder, FAILURES)
    slices_done = _done(slice_folder, fingerprint)
    if slices_done:  # a resumed run: pass 2 ran, its failures are known
        _mark_failed(rows, failures_uri)
    _write_index(output_uri, rows)
    ok = [r for r in rows if r["status"] == "ok"]
    jobs = []
    if not slices_done:
        slice_ds = ray.data.from_items(
            [{k: r[k] for k in ("case_id", "image_uri", "mask_uri", "split")} for r in ok],
            override_num_blocks=len(ok),
        ).map_batches(
            case_slices,
            batch_size=1,
            fn_kwargs={
                "cfg_dict": to_dict(cfg), "stats_dict": stats_dict, "failures_uri": failures_uri,
            },
        )  # fmt: skip
        jobs.append((slice_ds, slice_folder, rows_per_file(cfg, "slices"), _ids(ok)))
    volume_folder = storage.join(output_uri, "volumes")

    def volume_job(usable: list[dict[str, Any]]) -> tuple:
        splits = {int(r["case_id"]): r["split"] for r in usable}
        volume_ds = inspected.map_batches(
            normalise_volumes, fn_kwargs={"stats_dict": stats_dict, "splits": splits}
        )
        return volume_ds, volume_folder, rows_per_file(cfg, "volumes"), _ids(usable)

    if not _done(volume_folder, fingerprint, _ids(ok)):  # made for other cases: redo
        jobs.append(volume_job(ok))
    _run_writes(jobs, fingerprint)
    if _mark_failed(rows, failures_uri):
        # Cases that failed pass 2 leave the volume shards too (their z-score histograms from
        # pass 1 stay in the statistics: the slices were already normalised with them).
        _write_index(output_uri, rows)
        _run_writes([volume_job([r for r in rows if r["status"] == "ok"])], fingerprint)

    record = _record(input_uri, output_uri, cfg, stats, rows, fingerprint, started)
    record["warnings"] = warnings
    storage.write_text(record_uri, json.dumps(record, indent=2))
    return record


def _run_writes(jobs: list[tuple], fingerprint: str) -> None:
    """Write shard kinds concurrently: one dataset alone leaves cores idle on small splits."""
    with ThreadPoolExecutor(max_workers=max(len(jobs), 1)) as pool:
        futures = [pool.submit(_write_kind, ds, f, n, fingerprint, ids) for ds, f, n, ids in jobs]
        for future in futures:
            future.result()


def _ids(rows: list[dict[str, Any]]) -> list[int]:
    return sorted(int(r["case_id"]) for r in rows)


def _write_index(output_uri: str, rows: list[dict[str, Any]]) -> None:
    storage.write_bytes(storage.join(output_uri, "index.parquet"), table_bytes(_index_table(rows)))


def _mark_failed(rows: list[dict[str, Any]], failures_uri: str) -> bool:
    """Mark the cases pass 2 reported under ``failures_uri`` as failed; True if any was ok."""
    if not storage.exists(failures_uri):
        return False
    changed = False
    for uri, _ in storage.list_files(failures_uri):
        failure = json.loads(storage.read_text(uri))
        for row in rows:
            if row["case_id"] == failure["case_id"] and row["status"] == "ok":
                row.update(status="error", error=failure["error"], split="")
                changed = True
    return changed


def _errors(rows: list[dict[str, Any]]) -> list[str]:
    return [r["error"] for r in rows if r["status"] != "ok"]


def _record(
    input_uri: str,
    output_uri: str,
    cfg: PreprocessConfig,
    stats: IntensityStats,
    rows: list[dict[str, Any]],
    fingerprint: str,
    started: float,
) -> dict[str, Any]:
    splits = {}
    for split in SPLITS:
        ids = [r["case_id"] for r in rows if r["split"] == split and r["status"] == "ok"]
        slices = parquet_rows(storage.join(output_uri, "slices", split))
        splits[split] = {"cases": len(ids), "slices": slices, "case_ids": ids}
    written = sum(size for _, size in storage.list_files(output_uri))
    return {
        "record_version": RECORD_VERSION,
        "code_version": livseg.__version__,
        "input": input_uri,
        "config": to_dict(cfg),
        "channels": cfg.channels,
        "stats": stats.__dict__,
        "label_map": LABEL_MAPS[cfg.label_mode],
        "cases": {"ok": sum(r["status"] == "ok" for r in rows), "failed": len(_errors(rows))},
        "failures": [{"case_id": r["case_id"], "error": r["error"]} for r in rows if r["error"]],
        "splits": splits,
        "bytes_written": written,
        "seconds": round(time.time() - started, 1),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "fingerprint": fingerprint,
    }


def format_summary(record: dict[str, Any], output_uri: str) -> str:
    """Human-readable lines for the end of a preprocessing job."""
    lines = [
        f"shards: {output_uri}",
        f"cases ok {record['cases']['ok']}, failed {record['cases']['failed']}"
        + (f" ({record['resumed']})" if record.get("resumed") else ""),
    ]
    for split, info in record["splits"].items():
        lines.append(f"  {split:5s}: {info['cases']:4d} cases, {info['slices']:6d} slices")
    lines.append(f"bytes written: {record['bytes_written'] / 2**20:.1f} MiB")
    for failure in record["failures"]:
        lines.append(f"  failed case {failure['case_id']}: {failure['error']}")
    lines += [f"  warning: {text}" for text in record.get("warnings", [])]
    return "\n".join(lines)
