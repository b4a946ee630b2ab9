"""The nightly archive job: discovery and series selection, the ledger, the fan-out through the
Serve app and the reports."""

from livseg.archive.discovery import Skipped, Study, discover
from livseg.archive.ledger import Ledger
from livseg.archive.reports import FAILURE_COLUMNS, REPORT_COLUMNS, format_summary
from livseg.archive.rules import SelectionRules, rejection
from livseg.archive.runner import ArchiveConfig, model_id, segment_archive

__all__ = [
    "FAILURE_COLUMNS", "REPORT_COLUMNS", "ArchiveConfig", "Ledger", "SelectionRules", "Skipped",
    "Study", "discover", "format_summary", "model_id", "rejection", "segment_archive",
]  # fmt: skip
