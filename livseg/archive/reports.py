"""The archive job's outputs besides the masks: ``report.parquet`` (one row per segmented
study), ``failures.parquet`` (key, input, stage, reason) and the run summary JSON."""

from __future__ import annotations

import io
import json
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from livseg.io import storage

REPORT_COLUMNS = (
    "key", "input", "kind", "fingerprint", "model", "version", "mask", "seg", "thumbnail",
    "liver_ml",
    "tumour_count", "tumour_ml", "tumour_burden_pct", "largest_tumour_diameter_mm", "tumours",
    "confidence", "agreement", "review", "reasons", "seconds", "segmented_at",
)  # fmt: skip
FAILURE_COLUMNS = ("key", "input", "stage", "reason")


def report_row(study, result: dict[str, Any], when: str) -> dict[str, Any]:
    """A ``report.parquet`` row from a Serve report (see ``livseg.inference.analyse_study``)."""
    stats, qa = result["statistics"], result["qa"]
    return {
        "key": study.key, "input": study.source, "kind": study.kind,
        "fingerprint": study.fingerprint, "model": result["model"]["name"],
        "version": result["model"]["version"], "mask": result["output"],
        "seg": result.get("seg_output"), "thumbnail": result.get("thumbnail_output"),
        "liver_ml": stats["liver_ml"], "tumour_count": stats["tumour_count"],
        "tumour_ml": stats["tumour_ml"], "tumour_burden_pct": stats["tumour_burden_pct"],
        "largest_tumour_diameter_mm": stats["largest_tumour_diameter_mm"],
        "tumours": json.dumps(stats["tumours"]), "confidence": qa["confidence"],
        "agreement": qa["agreement"], "review": qa["review"], "reasons": "; ".join(qa["reasons"]),
        "seconds": result["seconds"]["request"], "segmented_at": when,
    }  # fmt: skip


def failure_row(skipped) -> dict[str, Any]:
    """A ``failures.parquet`` row for an input discovery or selection skipped."""
    return {"key": "", "input": skipped.input, "stage": skipped.stage, "reason": skipped.reason}


def newest_per_key(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per study key, the newest (a study whose content changed keeps its key and mask
    path; its older ledger entries describe a mask that no longer exists)."""
    newest: dict[str, dict] = {}
    for row in sorted(rows, key=lambda r: r.get("segmented_at") or r.get("when") or ""):
        newest[row["key"]] = row
    return list(newest.values())


def _write_table(uri: str, rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    table = pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rows])
    if not rows:
        table = pa.table({c: pa.array([], pa.string()) for c in columns})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    storage.write_bytes(uri, buffer.getvalue())  # atomic: readers never see half a report


def write_reports(output: str, done: list[dict], failures: list[dict]) -> None:
    """``report.parquet`` and ``failures.parquet`` under ``output``, sorted by key."""
    done = sorted(done, key=lambda r: r["key"])
    failures = sorted(failures, key=lambda r: (r["stage"], r["input"]))
    _write_table(storage.join(output, "report.parquet"), done, REPORT_COLUMNS)
    _write_table(storage.join(output, "failures.parquet"), failures, FAILURE_COLUMNS)


def write_summary(output: str, summary: dict[str, Any]) -> str:
    uri = storage.join(output, "runs", f"{summary['run_id']}.json")
    storage.write_bytes(uri, json.dumps(summary, indent=2).encode())
    return uri


def format_summary(summary: dict[str, Any]) -> str:
    counts = summary["counts"]
    lines = [
        f"archive run {summary['run_id']}: model {summary['model']}",
        f"  segmented {counts['segmented']}, skipped as done {counts['skipped_done']}, "
        f"failed before (--retry-failed to retry) {counts['skipped_failed']}, "
        f"not selected {counts['not_selected']}, failed {counts['failed']}, "
        f"flagged for review {counts['review']}",
        f"  {summary['seconds']:.1f} s, {summary['studies_per_s']:.3f} studies/s",
    ]
    return "\n".join(lines)
