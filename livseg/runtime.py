"""Connecting to Ray: one place that decides local instance vs existing cluster."""

from __future__ import annotations

import os

# Ray Train's controller polls its workers every 2 s by default, so each run ends up to ~2 s
# after its last report and a short run (tests, sweeps' trials) waits on polls more than it
# trains. 0.5 s keeps the polling cheap for tens of workers.
TRAIN_POLL_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5"}


def quick_train_polling() -> None:
    """Poll Ray Train's workers every 0.5 s unless the driver's environment says otherwise
    (Ray propagates it from the driver to the controller; a value exported only on the nodes
    is overridden). Set for the process: later trainers poll alike."""
    for key, value in TRAIN_POLL_ENV.items():
        os.environ.setdefault(key, value)


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
