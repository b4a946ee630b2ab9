"""Session-wide test settings: environment for Ray on these machines, a fake AWS endpoint, and
how the suite splits over two pytest-xdist processes (``-n 2`` in pyproject.toml).

The S3 endpoint is fixed before any Ray worker starts, so workers inherit it; the moto server
behind it starts only when a test asks for the ``s3`` fixture.

Two processes, one Ray instance each: the suite waits on Ray (actor start-up, polling, job
subprocesses) for about a quarter of its time, which the second process fills. Their torch
threads would spin-wait on each other's cores (OpenMP's default), so OMP_WAIT_POLICY=PASSIVE
(measured: two training loops at once went from 4.8 + 4.8 to 12.2 + 12.2 rows/s against 21
for one alone). Each integration module runs whole in one process, heaviest first.

Torch gets one thread per process (OMP_NUM_THREADS for every process, LIVSEG_TORCH_THREADS for
Ray Train workers and Serve replicas, which set theirs from their CPUs): two processes on two
cores keep both busy, and each op's two threads then wait for a core at every barrier (the
measurements: ``livseg.runtime``, next to TORCH_THREADS_ENV).
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import tempfile

from livseg.runtime import TORCH_THREADS_ENV, TRAIN_POLL_ENV


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


S3_PORT = _free_port()
os.environ.update(
    {
        # Keep every Ray component on 127.0.0.1 (multi-node test clusters hang otherwise).
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
        "HF_HUB_OFFLINE": "1",
        "OMP_WAIT_POLICY": "PASSIVE",  # before torch is imported here or in any Ray worker
        "OMP_NUM_THREADS": "1",
        TORCH_THREADS_ENV: "1",
        # What build_trainer sets on first use, set before any test so that every test and
        # the jobs they start poll the same way whatever the order they run in.
        **TRAIN_POLL_ENV,
        # Ray Train's watcher of nodes an autoscaler drains (spot preemption) is one more actor
        # process per run; no test drains a node (the node-loss tests kill them).
        "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{S3_PORT}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
)
os.environ.pop("AWS_PROFILE", None)
os.environ.pop("RAY_ADDRESS", None)
if "PYTEST_XDIST_WORKER" in os.environ:
    # Each test process its own Ray temp root: a job a test starts without an address must not
    # find the other process's multi-node test cluster in the shared /tmp/ray/ray_current_cluster.
    # Short: Ray's socket paths under it must stay within 107 characters.
    _ray_tmp = tempfile.mkdtemp(prefix=f"lv-{os.environ['PYTEST_XDIST_WORKER']}-", dir="/tmp")
    os.environ["RAY_TMPDIR"] = _ray_tmp
    atexit.register(shutil.rmtree, _ray_tmp, ignore_errors=True)

import pytest  # noqa: E402

# Integration modules by serial time (past runs' --durations), longest first, so that the two
# processes end together (longest-first scheduling); the rest follow in collection order.
HEAVY_FIRST = (
    "test_archive.py", "test_jobs_cli.py", "test_quality.py", "test_training.py",
    "test_benchmark.py", "test_tune.py", "test_serve.py", "test_cluster_jobs.py",
    "test_node_loss.py", "test_evaluate.py", "test_preprocess_job.py",
)  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order within


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """Whole modules to one process (module fixtures built once), in collection order: pytest
    9.2 ignores ``xdist_group`` marks under ``--dist loadgroup`` (pytest-xdist issue 1386)."""
    from xdist.scheduler import LoadScopeScheduling

    if config.getoption("dist") != "load":
        return None  # a --dist the user chose
    config.option.loadscopereorder = False  # keep HEAVY_FIRST, not the most tests first
    return LoadScopeScheduling(config, log)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance (2 CPUs) shared by every integration test."""
    import ray
    from job_helpers import init_local_ray  # tests/integration, the only users

    if not ray.is_initialized():
        init_local_ray()
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 protocol server (moto) on 127.0.0.1; yields a function making fresh buckets."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=S3_PORT, verbose=False)
    server.start()
    client = boto3.client("s3")
    created = []

    def make_bucket(name: str) -> str:
        client.create_bucket(Bucket=name)
        created.append(name)
        return f"s3://{name}"

    yield make_bucket
    server.stop()
