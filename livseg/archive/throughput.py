"""The archive job's throughput, for the benchmark beside ``livseg.serve.throughput``'s direct
Segmenter on the same studies."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from livseg.archive.runner import ArchiveConfig, segment_archive
from livseg.serve import timed_windows


def archive_rate(archive: str, out_root: Path, studies: int, slices: int, repeats: int) -> dict:
    """Studies/s and slices/s of the nightly job on ``archive`` (``studies`` NIfTI files of
    ``slices`` axial slices in all). Each window writes to a fresh output, so every study is
    segmented; the Serve app must already run with roots covering ``archive`` and ``out_root``."""
    nights = iter(range(1, 1_000_000))

    def run() -> int:
        cfg = ArchiveConfig(archive=archive, output=str(out_root / f"night-{next(nights)}"),
                            progress=False)  # fmt: skip
        with contextlib.redirect_stdout(io.StringIO()):  # one line per study: not the JSON's
            summary = segment_archive(cfg)
        if summary["counts"]["segmented"] != studies:
            raise RuntimeError(f"the archive job segmented {summary['counts']} of {studies}")
        return slices

    run()  # warm-up
    return timed_windows(run, studies, repeats)
