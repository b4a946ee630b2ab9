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


def largest_node_cpus() -> int:
    """CPUs of the biggest alive node: the most one Ray worker can hold (a worker never spans
    nodes, so the cluster's total is the wrong bound on a multi-node cluster)."""
    import ray

    alive = [n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")]
    return int(max(alive, default=0))
