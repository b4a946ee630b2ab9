"""Connecting to Ray: one place that decides local instance vs existing cluster."""

from __future__ import annotations

import math
import os

from livseg.errors import UsageError

# Ray Train's controller polls its workers every 2 s by default, so each run ends up to ~2 s
# after its last report and a short run (tests, sweeps' trials) waits on polls more than it
# trains. 0.5 s keeps the polling cheap for tens of workers.
TRAIN_POLL_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5"}


# A cap on torch's intra-op threads (unset: one thread per CPU a process holds). For nodes whose
# cores other processes share: every op's threads meet at a barrier, so a thread waiting for a
# busy core stalls the op. Measured on 2 cores (smp U-Net-ResNet34, 8 × 64², bf16): one
# training step took 270 ms with 2 threads and 274 with 1 alone, 683 and 265 beside one busy
# process, 2,253 and 260 with two such loops at once.
TORCH_THREADS_ENV = "LIVSEG_TORCH_THREADS"


def torch_threads(cpus: float) -> int:
    """Torch intra-op threads for a process holding ``cpus`` CPUs: one per whole CPU (at least
    one; Ray's OMP_NUM_THREADS default), at most ``LIVSEG_TORCH_THREADS`` where that is set.
    Read on the driver (``fit``, ``build_app``), which passes the number to the workers or
    replicas: on a running cluster the driver's environment does not reach them."""
    threads = max(1, math.floor(cpus))
    cap = os.environ.get(TORCH_THREADS_ENV, "").strip()
    if not cap:
        return threads
    try:
        limit = int(cap, 10)
    except ValueError:
        limit = 0
    if limit < 1:
        raise UsageError(
            f"{TORCH_THREADS_ENV}={cap!r}: give a whole number of threads (1 or more) or unset it"
        )
    return min(threads, limit)


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
