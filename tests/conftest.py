"""Session-wide test settings: environment for Ray on these machines and a fake AWS endpoint.

The S3 endpoint is fixed before any Ray worker starts, so workers inherit it; the moto server
behind it starts only when a test asks for the ``s3`` fixture.
"""

from __future__ import annotations

import os
import socket

from livseg.runtime import TRAIN_POLL_ENV


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
        # What build_trainer sets on first use, set before any test so that every test and
        # the jobs they start poll the same way whatever the order they run in.
        **TRAIN_POLL_ENV,
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{S3_PORT}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
)
os.environ.pop("AWS_PROFILE", None)
os.environ.pop("RAY_ADDRESS", None)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance (2 CPUs) shared by every integration test."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
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
