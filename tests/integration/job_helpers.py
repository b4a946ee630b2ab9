"""Shared by integration tests: run a job in-process, check a written report, free ports, run
a job as its own process with a private Ray instance (to kill it), multi-node clusters, and
session data built once for both test processes."""

from __future__ import annotations

import glob
import hashlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from PIL import Image

from livseg import cli

ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def load_job(name: str):
    """``jobs/<name>.py`` as a module (the jobs folder is not a package)."""
    spec = importlib.util.spec_from_file_location(f"job_{name}", ROOT / "jobs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_job(name: str, argv: list[str]) -> int:
    """Run ``jobs/<name>.py`` in this process (the session's Ray instance is reused)."""
    module = load_job(name)
    return cli.run(module.main, module.parser(), argv)


def shared_once(factory: Any, name: str, build: Callable[[Path], str]) -> str:
    """``build(folder)`` once per test run, whatever the number of xdist processes: the first
    to ask builds under a lock in the run's common temporary folder, the others wait and reuse
    its (JSON) result. The results are read-only for the tests."""
    if not factory.getbasetemp().name.startswith("popen-gw"):  # not an xdist worker's
        return build(factory.mktemp(name))
    from filelock import FileLock

    root = factory.getbasetemp().parent  # this run's pytest-N/, above its popen-gw* folders
    result = root / f"{name}.json"
    with FileLock(str(root / f"{name}.lock")):
        if not result.is_file():  # a fresh folder: a build that failed before may have left one
            result.write_text(json.dumps(build(Path(tempfile.mkdtemp(prefix=name, dir=root)))))
        return json.loads(result.read_text())


@contextmanager
def removed_unless_failed(request: Any, folder: Path) -> Iterator[Path]:
    """A module fixture's ``folder``, removed at the fixture's teardown unless a test failed
    meanwhile: what ``tmp_path_retention_policy = "failed"`` does for ``tmp_path`` (the
    suite's checkpoints do not fit every CI disk)."""
    failed = request.session.testsfailed
    yield folder
    if request.session.testsfailed == failed:
        shutil.rmtree(folder, ignore_errors=True)


def check_report(out: Path) -> list[str]:
    """Every image the HTML names exists, is a valid PNG of non-trivial size; returns names."""
    html = (out / "report.html").read_text()
    names = sorted({part.split('"')[0] for part in html.split('<img src="')[1:]})
    assert names, "report has no figures"
    for name in names:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5_000, name
        with Image.open(out / name) as image:
            image.verify()
    return names


def mask_checksums(folder: Path) -> dict[str, str]:
    """Name → SHA-256 of each NIfTI mask in ``folder`` (a DICOM SEG differs between runs: its
    UIDs are new)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.glob("*.nii.gz"))}  # fmt: skip


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def our_processes(marker: str) -> list[int]:
    """PIDs whose environment carries ``marker`` (the subprocess's private RAY_TMPDIR)."""
    pids = []
    for environ in glob.glob("/proc/[0-9]*/environ"):
        try:
            if marker.encode() in Path(environ).read_bytes().split(b"\0"):
                pids.append(int(environ.split("/")[2]))
        except OSError:
            continue
    return pids


def wait_gone(marker: str, timeout: float) -> list[int]:
    """Wait until no process carries ``marker``; the PIDs still left after ``timeout`` s."""
    deadline = time.time() + timeout
    while (left := our_processes(marker)) and time.time() < deadline:
        time.sleep(1)
    return left


@contextmanager
def private_ray():
    """``(env, marker)`` for a subprocess that starts its own local Ray instance under a private
    RAY_TMPDIR; on exit every process carrying the marker is killed (only what the test
    started)."""
    ray_tmp = tempfile.mkdtemp(prefix="lvt", dir="/tmp")  # short: Ray's socket paths are limited
    marker = f"RAY_TMPDIR={ray_tmp}"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"RAY_TMPDIR": ray_tmp}
    try:
        yield env, marker
    finally:
        for pid in our_processes(marker):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(ray_tmp, ignore_errors=True)


def init_local_ray() -> None:
    """The session's local Ray instance: 2 CPUs, no dashboard, and a dashboard port nothing
    listens on all the same. Ray records 127.0.0.1:8265 for an instance without a dashboard,
    and Ray Train's placement-group cleaner asks that address whether the run's controller is
    alive: it reached a job subprocess's dashboard of the other test process there, did not
    find the controller and removed a running training's workers ("placement group was
    removed", 2026-12-04). On a port nothing listens on the question fails and it waits."""
    import ray

    ray.init(
        address="local", num_cpus=2, include_dashboard=False, dashboard_port=free_port(),
        log_to_driver=False,
    )  # fmt: skip


@contextmanager
def node_cluster(workers: int = 2) -> Iterator[Any]:
    """A ``ray.cluster_utils.Cluster``: a head without CPUs (so every task and replica runs on
    a worker node a test can remove) and ``workers`` 1-CPU nodes, this process connected to it.
    The session's local Ray instance comes back afterwards."""
    import ray
    from ray.cluster_utils import Cluster

    had_session = ray.is_initialized()
    ray.shutdown()
    nodes = Cluster(  # a dashboard port nothing listens on: see init_local_ray
        initialize_head=True,
        head_node_args={"num_cpus": 0, "include_dashboard": False, "dashboard_port": free_port()},
    )
    try:
        for _ in range(workers):
            nodes.add_node(num_cpus=1)
        ray.init(address=nodes.address, log_to_driver=False)
        yield nodes
    finally:
        ray.shutdown()
        nodes.shutdown()
        if had_session:
            init_local_ray()


def node_pids(node: Any, title: bytes) -> list[int]:
    """PIDs of the worker processes ``node``'s raylet started whose command line (Ray sets it
    to ``ray::<task or actor>``) contains ``title``."""
    raylets = {info.process.pid for info in node.all_processes.get("raylet", [])}
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid in raylets and title in cmdline:
            pids.append(int(proc.name))
    return pids
