"""Distribution and entry points on real clusters: a killed training worker on a multi-node
``ray.cluster_utils.Cluster``, and ``ray start --head`` + ``ray job submit`` of the preprocess,
train and evaluate jobs with token authentication."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from job_helpers import free_port, node_cluster, node_pids

from livseg.data import PreprocessConfig, preprocess
from livseg.synthetic import write_dataset
from livseg.train import TrainConfig, fit

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head (no CPUs) and two 1-CPU worker nodes, with 6 preprocessed cases at 64²."""
    with node_cluster(workers=2) as nodes:
        root = tmp_path_factory.mktemp("cluster-data")
        write_dataset(root / "raw", 6, seed=21, size=64)
        preprocess(str(root / "raw"), str(root / "shards"), PreprocessConfig(size=64, context=1))
        yield nodes, str(root / "shards")


def _train_worker_pids(nodes) -> list[int]:
    """PIDs of RayTrainWorker processes started by this cluster's raylets (nobody else's)."""
    return [pid for node in nodes.list_all_nodes() for pid in node_pids(node, b"RayTrainWorker")]


def test_killed_worker_resumes_from_last_checkpoint(cluster, tmp_path):
    nodes, shards = cluster
    # 6 steps an epoch: the test needs checkpoints and a restart, not a trained model.
    cfg = TrainConfig(
        data=shards, arch="unet", epochs=4, batch_size=8, lr=1e-3, workers=2, max_failures=3,
        steps_per_epoch=6, storage=str(tmp_path), name="fault",
    )  # fmt: skip
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(fit, cfg)
        deadline = time.time() + 300
        # the controller's snapshot appears once a reported checkpoint is registered
        while not (tmp_path / "fault" / "unet" / "checkpoint_manager_snapshot.json").exists():
            assert time.time() < deadline and not future.done(), "no checkpoint appeared"
            time.sleep(0.5)
        pids = _train_worker_pids(nodes)
        assert pids, "no training worker process found"
        os.kill(pids[0], signal.SIGKILL)
        row = future.result(timeout=600)
    assert row["resumed_from_epoch"] > 0, row  # restored epoch and optimizer, not from scratch
    assert row["epochs"] == 4


def test_ray_job_submit_runs_preprocess_train_evaluate(cluster, tmp_path):
    """The three jobs as a user submits them to a `ray start --head` cluster with token auth."""
    _, fixture_shards = cluster
    raw = str(Path(fixture_shards).parent / "raw")
    dashboard = free_port()
    # The secure path the README shows: token auth on; the CLI finds ~/.ray/auth_token.
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"RAY_AUTH_MODE": "token"}
    # The job's `python` must be this interpreter (as in an activated venv).
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    log = open(tmp_path / "head.log", "w")  # noqa: SIM115 - closed with the head below
    temp_dir = tempfile.mkdtemp(prefix="rayj", dir="/tmp")  # socket paths must stay short
    head = subprocess.Popen(
        [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
         f"--port={free_port()}", f"--dashboard-port={dashboard}", "--dashboard-host=127.0.0.1",
         f"--ray-client-server-port={free_port()}",
         f"--dashboard-agent-listen-port={free_port()}",
         "--num-cpus=2", f"--temp-dir={temp_dir}"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{dashboard}"
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/version", timeout=2)
                break
            except urllib.error.HTTPError:  # answering (401: token auth is on, as it should be)
                break
            except OSError:
                alive = head.poll() is None
                assert time.time() < deadline and alive, (tmp_path / "head.log").read_text()[-3000:]
                time.sleep(1)

        def submit(*job_args: str) -> str:
            job = subprocess.run(
                [sys.executable, "-m", "ray.scripts.scripts", "job", "submit", "--address", url,
                 "--working-dir", str(ROOT), "--", "python", *job_args],
                env=env, capture_output=True, text=True, timeout=900,
            )  # fmt: skip
            assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
            return job.stdout

        shards = str(tmp_path / "shards")
        out = submit("jobs/preprocess.py", "--input", raw, "--output", shards, "--size", "64",
                     "--context", "1")  # fmt: skip
        assert "cases ok 6, failed 0" in out and (tmp_path / "shards" / "preprocess.json").is_file()
        runs = str(tmp_path / "runs")
        out = submit("jobs/train.py", "--data", shards, "--arch", "unet-resnet34", "--epochs", "1",
                     "--set", "steps_per_epoch=6", "--workers", "1", "--storage", runs,
                     "--name", "submitted", "--lesion-rule")  # fmt: skip
        assert (tmp_path / "runs" / "submitted" / "comparison.csv").is_file()
        assert "\nunet-resnet34: lesion rule {" in out  # chosen on validation, recorded
        checkpoint = out.split("unet-resnet34: best checkpoint ", 1)[1].split()[0]
        out = submit("jobs/evaluate.py", "--model", checkpoint, "--data", shards,
                     "--out", str(tmp_path / "eval"), "--mc", "10")  # fmt: skip
        assert (tmp_path / "eval" / "report.html").is_file() and "report: " in out
    finally:
        if head.poll() is None:
            os.killpg(head.pid, signal.SIGTERM)  # only the processes of the head we started
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)
