"""The nightly archive job: discovery and series selection, the ledger, the fan-out through the
Serve app and the reports."""

from livseg.archive.discovery import Skipped, Study, discover
from livseg.archive.ledger import Ledger, model_id
from livseg.archive.reports import FAILURE_COLUMNS, REPORT_COLUMNS, format_summary
from livseg.archive.rules import SelectionRules, rejection
from livseg.archive.runner import JOB_APP, ArchiveConfig, segment_archive
from livseg.archive.throughput import archive_rate

__all__ = [
    "FAILURE_COLUMNS", "JOB_APP", "REPORT_COLUMNS", "ArchiveConfig", "Ledger", "SelectionRules",
    "Skipped", "Study", "archive_rate", "discover", "format_summary", "model_id", "rejection",
    "segment_archive",
]  # fmt: skip
