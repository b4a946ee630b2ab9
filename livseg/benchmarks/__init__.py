"""Benchmarks: every stage measured side by side with its best plain baseline in one run, as
the median (min, max) of equal timed windows after a warm-up; ratios against targets in one
JSON document and a plot. Tests never assert timings."""

from livseg.benchmarks.document import check_finite, document, ratio_table, write_document
from livseg.benchmarks.plan import SCALES, STAGES, BenchScale, run_benchmarks
from livseg.benchmarks.windows import (
    interleaved,
    paired_ratio,
    rates,
    ratio_bounds,
    summary,
    timed_iter,
)  # fmt: skip

__all__ = [
    "SCALES", "STAGES", "BenchScale", "check_finite", "document", "interleaved", "paired_ratio",
    "ratio_bounds", "ratio_table", "rates", "run_benchmarks", "summary", "timed_iter",
    "write_document",
]  # fmt: skip
