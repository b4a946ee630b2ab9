"""Faults injected into Ray workers by tests (``worker_process_setup_hook``), never by livseg."""

from __future__ import annotations

import os


def fail_second_pass() -> None:
    """Make preprocessing's second pass fail for the volume of depth ``$LIVSEG_FAIL_DEPTH``.

    Only pass 2 calls ``slice_samples``: pass 1 of the same case succeeds, as when a file is
    replaced or a read fails between the passes.
    """
    from livseg.data import tasks

    depth = int(os.environ["LIVSEG_FAIL_DEPTH"])
    original = tasks.slice_samples

    def flaky(hu, *args, **kwargs):
        if hu.shape[2] == depth:
            raise OSError("simulated read failure in the second pass")
        return original(hu, *args, **kwargs)

    tasks.slice_samples = flaky
