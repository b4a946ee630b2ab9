"""The nightly job: discover, skip what the ledger has, send the rest through the Serve app's
``ModelServer`` (a ``DeploymentHandle``; studies travel by URI, a bounded number in flight),
record each result, then rebuild the reports from the ledger."""

from __future__ import annotations

import logging
import secrets
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from livseg.archive.discovery import Study, discover
from livseg.archive.ledger import Ledger, model_id
from livseg.archive.night import write_night_html
from livseg.archive.reports import (
    failure_row,
    newest_per_key,
    report_row,
    write_reports,
    write_summary,
)  # fmt: skip
from livseg.archive.rules import SelectionRules
from livseg.config import load
from livseg.errors import UsageError
from livseg.io import storage
from livseg.serve import APP_NAME, ServeSettings, serve_running, start_app, stop_app

log = logging.getLogger(__name__)
RETRIES = 5  # a replica that dies mid-study: Serve replaces it, the study is sent again
JOB_APP = "livseg-archive"  # the app this job starts when no ``livseg`` app runs


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
    timeout_s: float = 3600.0  # one study's limit; a hung replica must not hang the night
    gpu: bool = False  # the app this job starts: one GPU per model replica
    progress: bool | None = None  # None: a bar when stderr is a terminal, else a line per study

    def __post_init__(self) -> None:
        if self.max_in_flight < 1 or self.timeout_s <= 0:
            raise UsageError(
                f"max_in_flight={self.max_in_flight} must be ≥ 1, timeout_s={self.timeout_s} > 0"
            )
        archive, output = (
            storage.absolute(u).rstrip("/") + "/" for u in (self.archive, self.output)
        )
        if output.startswith(archive) or archive.startswith(output):
            raise UsageError(
                f"--output {self.output} and --archive {self.archive} overlap: the next night "
                "would segment its own masks; write the results outside the archive"
            )


@contextmanager
def model_handle(cfg: ArchiveConfig):
    """The ``ModelServer`` handle of the running ``livseg`` app, or of an app this job starts
    (handles only, roots = the archive and the output) and removes when it ends. Refuses a
    running app whose roots do not cover the archive and the output."""
    from ray import serve
    from ray.serve.schema import ApplicationStatus

    app = serve.status().applications.get(APP_NAME)
    # Running, deploying or replacing a replica: use it (calls wait for a ready replica).
    usable = (ApplicationStatus.RUNNING, ApplicationStatus.DEPLOYING, ApplicationStatus.UNHEALTHY)
    name, started_serve = APP_NAME, False
    if app is None or app.status not in usable:
        name, started_serve = JOB_APP, not serve_running()
        settings = ServeSettings(
            model=cfg.model, roots=(cfg.archive, cfg.output),
            gpus_per_replica=1.0 if cfg.gpu else 0.0,
        )  # fmt: skip
        # No HTTP route, and a token nobody knows, should a route ever be added.
        start_app(settings, token=secrets.token_hex(24), http=False, name=name)
    try:
        handle = serve.get_deployment_handle("ModelServer", app_name=name)
        outside = handle.outside_roots.remote([cfg.archive, cfg.output]).result()
        if outside:
            raise UsageError(
                f"the running Serve app {APP_NAME!r} may not read or write {', '.join(outside)}: "
                "add them to its roots, or stop it (serve shutdown) so that this job starts "
                "its own"
            )
        yield handle
    finally:
        if started_serve:  # leave the cluster as found: no Serve with its proxy disabled
            serve.shutdown()
        elif name == JOB_APP:
            stop_app(JOB_APP)


def _segment(handle, study: Study, output: str, timeout_s: float) -> dict[str, Any]:
    """The Serve report, or ``{"status", "detail"}``: 4xx for the input, 5xx for the moment."""
    from ray.exceptions import RayActorError

    source: str | list[str] = study.inputs[0] if study.kind == "nifti" else list(study.inputs)
    mask = storage.join(output, "masks", f"{study.key}.nii.gz")
    seg = mask.removesuffix(".nii.gz") + ".seg.dcm" if study.kind == "dicom" else None
    thumbnail = storage.join(output, "thumbnails", f"{study.key}.png")
    for attempt in range(RETRIES):
        try:
            response = handle.segment_uri.remote(source, mask, seg, thumbnail)
            return response.result(timeout_s=timeout_s)
        except RayActorError:
            log.warning("study %s: replica lost (attempt %d); retrying", study.key, attempt + 1)
            time.sleep(1.0)
        except Exception as exc:  # noqa: BLE001 - a timeout or cluster error: retry next run
            return {"status": 503, "detail": f"{type(exc).__name__}; retried at the next run"}
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
    if stale := storage.remove_temps(cfg.output, older_than_s=3600):
        log.info("removed %d temporary files of an interrupted run", stale)
    with model_handle(cfg) as handle:
        info = handle.reload.remote().result()  # pick up a new current version now, not in 30 s
        run = _Run(cfg, Ledger(cfg.output, model_id(info)), studies, skipped)
        run.segment(handle)
    done = newest_per_key(run.ledger.rows("done"))
    done_keys = {row["key"] for row in done}
    earlier = [r for r in newest_per_key(run.ledger.rows("failed")) if r["key"] not in done_keys]
    not_selected = [failure_row(s) for s in skipped]
    failures = not_selected + earlier + run.transient
    write_reports(cfg.output, done, failures)
    seconds = time.perf_counter() - started
    summary = {
        "run_id": datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6],
        "model": model_id(info), "counts": run.counts, "seconds": round(seconds, 2),
        "studies_per_s": round(run.counts["segmented"] / seconds, 4) if seconds else 0.0,
        "report": storage.join(cfg.output, "report.parquet"),
    }  # fmt: skip
    night_failures = not_selected + run.failed + run.transient
    summary["html"] = write_night_html(cfg.output, summary, run.done, night_failures)
    summary["summary"] = write_summary(cfg.output, summary)
    return summary


class _Run:
    """One night's fan-out and bookkeeping (counts, this run's rows)."""

    def __init__(self, cfg: ArchiveConfig, ledger: Ledger, studies: list, skipped: list):
        self.cfg, self.ledger = cfg, ledger
        self.todo = [s for s in studies if s.fingerprint not in ledger.done
                     and (cfg.retry_failed or s.fingerprint not in ledger.failed)]  # fmt: skip
        done_before = sum(s.fingerprint in ledger.done for s in studies)
        self.counts = {"segmented": 0, "failed": 0, "review": 0, "skipped_done": done_before,
                       "skipped_failed": len(studies) - len(self.todo) - done_before,
                       "not_selected": len(skipped)}  # fmt: skip
        self.done: list[dict] = []  # this run's rows, for the night's page
        self.failed: list[dict] = []
        self.transient: list[dict] = []  # 5xx: not in the ledger, so the next run retries

    def segment(self, handle) -> None:
        bar = _progress(self.cfg, len(self.todo))
        pool = ThreadPoolExecutor(self.cfg.max_in_flight)
        try:
            futures = {pool.submit(_segment, handle, s, self.cfg.output, self.cfg.timeout_s): s
                       for s in self.todo}  # fmt: skip
            for future in as_completed(futures):
                study, result = futures[future], future.result()
                self.record(study, result)
                bar(study, result)
        finally:  # an error or Ctrl-C: do not segment the rest without recording it
            pool.shutdown(wait=True, cancel_futures=True)
            bar(None, None)

    def record(self, study: Study, result: dict) -> None:
        when = datetime.now(timezone.utc).isoformat(timespec="seconds")
        if result["status"] == 200:
            row = report_row(study, result["report"], when)
            # The ledger of the model that made the mask (a promotion mid-run, or a replica that
            # has not reloaded yet, must not file a mask under another version).
            ledger, made_by = self.ledger, result["report"]["model"]
            if made_by.get("version") and model_id(made_by) != ledger.model:
                log.warning("study %s was segmented by %s, not %s", study.key,
                            model_id(made_by), ledger.model)  # fmt: skip
                ledger = Ledger(self.cfg.output, model_id(made_by))
            ledger.record(study.fingerprint, "done", row)  # after the mask: never one without
            self.counts["segmented"] += 1
            self.counts["review"] += int(row["review"])
            self.done.append(row)
            return
        row = {"key": study.key, "input": study.source, "stage": "segment",
               "reason": result["detail"], "fingerprint": study.fingerprint}  # fmt: skip
        self.counts["failed"] += 1
        if result["status"] >= 500:
            self.transient.append(row)
        else:
            self.ledger.record(study.fingerprint, "failed", row)
            self.failed.append(row)


def _progress(cfg: ArchiveConfig, total: int) -> Callable[[Study | None, dict | None], None]:
    """A tqdm bar when interactive, else one line per study (keys only: nothing identifying).
    Called with ``None`` once at the end."""
    interactive = sys.stderr.isatty() if cfg.progress is None else cfg.progress
    if interactive:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="study", file=sys.stderr)
        return lambda study, result: bar.update(1) if study else bar.close()

    def line(study: Study | None, result: dict | None) -> None:
        if study is None:
            return
        status = "ok" if result["status"] == 200 else f"failed ({result['status']})"
        flag = " review" if result.get("report", {}).get("qa", {}).get("review") else ""
        print(f"study {study.key} {status}{flag}", flush=True)

    return line
