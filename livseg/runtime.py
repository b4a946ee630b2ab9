"""Connecting to Ray: one place that decides local instance vs existing cluster."""

from __future__ import annotations

import os


def init_ray(address: str | None = None, **kwargs) -> None:
    """Start or join Ray once per process.

    ``address`` (or ``RAY_ADDRESS``, which ``ray job submit`` sets) joins a running cluster;
    without either a local instance starts, as on a laptop. Already initialised: nothing happens.
    """
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    ray.init(address=address, **kwargs)
