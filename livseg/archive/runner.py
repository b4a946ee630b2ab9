"""The nightly job: discover, skip what the ledger has, send the rest through the Serve app's
``ModelServer`` (a ``DeploymentHandle``; studies travel by URI, a bounded number in flight),
record each result, then rebuild the reports from the ledger."""

from __future__ import annotations

import hashlib
import logging
import secrets
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from livseg.archive.discovery import Study, discover
from livseg.archive.ledger import Ledger
from livseg.archive.reports import report_row, write_reports, write_summary
from livseg.archive.rules import SelectionRules
from livseg.config import load
from livseg.errors import UsageError
from livseg.io import storage
from livseg.serve import APP_NAME, ServeSettings, start_app

log = logging.getLogger(__name__)
RETRIES = 5  # a replica that dies mid-study: Serve replaces it, the study is sent again


@dataclass(frozen=True)
class ArchiveConfig:
    """One run of the archive job (``jobs/segment_archive.py`` flags)."""

    archive: str
    output: str
    model: str = "livseg-work/models/livseg"  # used when no Serve app runs yet
    rules: str = ""  # YAML file of SelectionRules keys
    retry_failed: bool = False
    dry_run: bool = False
    max_in_flight: int = 4
    progress: bool | None = None  # None: a bar when stderr is a terminal, else a line per study

    def __post_init__(self) -> None:
        if self.max_in_flight < 1:
            raise UsageError(f"max_in_flight={self.max_in_flight}: must be ≥ 1")


def model_handle(cfg: ArchiveConfig):
    """The running app's ``ModelServer`` handle; starts the app (loopback, roots = the archive
    and the output) when none runs on the cluster."""
    from ray import serve
    from ray.serve.exceptions import RayServeException

    try:
        apps = serve.status().applications
    except RayServeException:
        apps = {}
    if APP_NAME not in apps or str(apps[APP_NAME].status) != "RUNNING":
        roots = (storage.absolute(cfg.archive), storage.absolute(cfg.output))
        # The job talks to the replicas through handles: no HTTP route (and a token nobody
        # knows, should a route ever be added).
        start_app(ServeSettings(model=cfg.model, roots=roots), token=secrets.token_hex(24),
                  http=False)  # fmt: skip
    return serve.get_deployment_handle("ModelServer", app_name=APP_NAME)


def model_id(info: dict[str, Any]) -> str:
    """Ledger folder of a model: ``name-version``, or a hash of a bare checkpoint's URI."""
    if info.get("version"):
        return f"{info['name']}-{info['version']}"
    return "checkpoint-" + hashlib.sha256(info["checkpoint"].encode()).hexdigest()[:12]


def _segment(handle, study: Study, mask: str) -> dict[str, Any]:
    from ray.exceptions import RayActorError

    source: str | list[str] = study.inputs[0] if study.kind == "nifti" else list(study.inputs)
    seg = mask.replace(".nii.gz", ".seg.dcm") if study.kind == "dicom" else None
    for attempt in range(RETRIES):
        try:
            return handle.segment_uri.remote(source, mask, seg).result()
        except RayActorError:
            log.warning("study %s: replica lost (attempt %d); retrying", study.key, attempt + 1)
            time.sleep(1.0)
    return {"status": 503, "detail": f"no replica finished the study in {RETRIES} attempts"}


def segment_archive(cfg: ArchiveConfig) -> dict[str, Any]:
    """Run the job; returns the run summary (also written under ``OUTPUT/runs/``)."""
    rules = load(SelectionRules, cfg.rules or None)
    started = time.perf_counter()
    studies, skipped = discover(cfg.archive, rules)
    if cfg.dry_run:
        return {"dry_run": True, "to_segment": [s.source for s in studies],
                "skipped": [s.__dict__ for s in skipped]}  # fmt: skip
    cfg = replace(cfg, archive=storage.absolute(cfg.archive), output=storage.absolute(cfg.output))
    storage.make_dirs(cfg.output)
    handle = model_handle(cfg)
    info = handle.reload.remote().result()  # pick up a new current version now, not in 30 s
    ledger = Ledger(cfg.output, model_id(info))
    todo = [s for s in studies if s.fingerprint not in ledger.done
            and (cfg.retry_failed or s.fingerprint not in ledger.failed)]  # fmt: skip
    done_before = sum(s.fingerprint in ledger.done for s in studies)
    counts = {"segmented": 0, "failed": 0, "review": 0, "skipped_done": done_before,
              "skipped_failed": len(studies) - len(todo) - done_before,
              "not_selected": len(skipped)}  # fmt: skip
    bar = _progress(cfg, len(todo))
    with ThreadPoolExecutor(cfg.max_in_flight) as pool:
        futures = {}
        for study in todo:
            mask = storage.join(cfg.output, "masks", f"{study.key}.nii.gz")
            futures[pool.submit(_segment, handle, study, mask)] = (study, mask)
        for future in as_completed(futures):
            study, mask = futures[future]
            result = future.result()
            _record(ledger, study, mask, result, counts)
            bar(study, result)
    done = ledger.rows("done")
    done_keys = {row["fingerprint"] for row in done}
    failures = [s.__dict__ | {"key": ""} for s in skipped] + [
        row for row in ledger.rows("failed") if row["fingerprint"] not in done_keys
    ]
    write_reports(cfg.output, done, failures)
    seconds = time.perf_counter() - started
    summary = {
        "run_id": datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6],
        "model": model_id(info), "counts": counts, "seconds": round(seconds, 2),
        "studies_per_s": round(counts["segmented"] / seconds, 4) if seconds else 0.0,
        "report": storage.join(cfg.output, "report.parquet"),
    }  # fmt: skip
    summary["summary"] = write_summary(cfg.output, summary)
    return summary


def _record(ledger: Ledger, study: Study, mask: str, result: dict, counts: dict) -> None:
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if result["status"] == 200:
        row = report_row(study, result["report"], mask, when)
        ledger.record(study.fingerprint, "done", row)  # after the mask: never one without it
        counts["segmented"] += 1
        counts["review"] += int(row["review"])
    else:
        row = {"key": study.key, "input": study.source, "stage": "segment",
               "reason": result["detail"], "fingerprint": study.fingerprint}  # fmt: skip
        ledger.record(study.fingerprint, "failed", row)
        counts["failed"] += 1


def _progress(cfg: ArchiveConfig, total: int):
    """A tqdm bar when interactive, else one line per study (keys only: nothing identifying)."""
    interactive = sys.stderr.isatty() if cfg.progress is None else cfg.progress
    if interactive:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="study", file=sys.stderr)
        return lambda study, result: bar.update(1)

    def line(study: Study, result: dict) -> None:
        status = "ok" if result["status"] == 200 else f"failed ({result['status']})"
        flag = " review" if result.get("report", {}).get("qa", {}).get("review") else ""
        print(f"study {study.key} {status}{flag}", flush=True)

    return line
