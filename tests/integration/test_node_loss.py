"""Losing a node mid-run on a multi-node ``ray.cluster_utils.Cluster`` (127.0.0.1): the
preprocessing job still writes complete shards with no row twice, and the nightly archive job
loses the node holding the Serve replica and still segments every study exactly once."""

from __future__ import annotations

import json
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from job_helpers import mask_checksums, node_cluster, node_pids, run_job
from ray import serve

from livseg.data import PreprocessConfig, preprocess
from livseg.io import SPLITS
from livseg.registry import register
from livseg.serve import APP_NAME, ServeSettings, start_app, stop_app
from livseg.synthetic import write_archive, write_dataset

# Busy worker processes: Ray titles a worker by the task it runs (idle ones ``ray::IDLE``).
PREPROCESS_TASKS = (b"ray::MapBatches(case_slices)", b"ray::Write")


@pytest.fixture(scope="module")
def nodes(trained_unet):
    """Two 1-CPU worker nodes and a head without CPUs; the session's model is trained first,
    on the session's own Ray instance."""
    with node_cluster(workers=2) as cluster:
        yield cluster


def _wait_until(ready, future, what: str, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not ready():
        assert not future.done(), f"the run ended before {what}: {future.result()}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _keep_two_workers(nodes, extra) -> None:
    """After a failed test the added node may still be there: the next test expects two."""
    if extra in nodes.worker_nodes and len(nodes.worker_nodes) > 2:
        nodes.remove_node(extra)


def _rows(out: Path, kind: str, split: str) -> list[tuple[int, ...]]:
    """The row keys (case id, slice index) of every shard file of one split, in file order."""
    keys = []
    for path in sorted((out / kind / split).glob("*.parquet")):
        table = pq.read_table(path)
        slices = table.column("slice_index") if "slice_index" in table.column_names else None
        for n, case in enumerate(table.column("case_id").to_pylist()):
            keys.append((case, slices[n].as_py() if slices is not None else -1))
    return keys


def test_preprocessing_loses_a_worker_node_and_writes_every_row_once(nodes, tmp_path):
    raw, lost, whole = tmp_path / "raw", tmp_path / "lost", tmp_path / "whole"
    write_dataset(raw, 16, seed=31, size=64)
    # 1 MiB files: many write tasks, so the node dies with some written and some in flight
    cfg = PreprocessConfig(size=64, context=1, volume_size=(32, 32, 32), shard_mb=1)
    extra = nodes.add_node(num_cpus=1)
    nodes.wait_for_nodes()
    try:
        with ThreadPoolExecutor(1) as pool:
            future = pool.submit(preprocess, str(raw), str(lost), cfg)

            def mid_write() -> bool:  # pass 2 has written shards and the node runs a task of it
                written = any((lost / "slices").glob("*/*.parquet"))
                return written and any(node_pids(extra, title) for title in PREPROCESS_TASKS)

            _wait_until(mid_write, future, "the node ran a shard task")
            nodes.remove_node(extra, allow_graceful=False)
            record = future.result(timeout=600)
    finally:
        _keep_two_workers(nodes, extra)
    reference = preprocess(str(raw), str(whole), cfg)  # the same job, uninterrupted
    assert record["cases"] == reference["cases"] == {"ok": 16, "failed": 0}
    assert record["splits"] == reference["splits"]
    for kind in ("slices", "volumes"):
        for split in SPLITS:
            rows = _rows(lost, kind, split)
            assert len(rows) == len(set(rows)), f"{kind}/{split}: a row was written twice"
            assert sorted(rows) == sorted(_rows(whole, kind, split)), f"{kind}/{split} differs"
    slices = sum(record["splits"][s]["slices"] for s in SPLITS)
    assert slices == sum(len(_rows(lost, "slices", s)) for s in SPLITS) > 0


def test_archive_job_loses_the_replicas_node_and_segments_every_study_once(
    nodes, trained_unet, tmp_path, caplog
):
    registry = tmp_path / "models"
    register(str(registry), "livseg", trained_unet)
    archive, out = tmp_path / "archive", tmp_path / "out"
    kinds = write_archive(archive, nifti=3, dicom=2, seed=7, size=64)
    extra = nodes.add_node(num_cpus=1)  # two worker nodes remain for the replica's restart
    nodes.wait_for_nodes()
    # The operator's app (1 replica, 1 CPU: on one of the worker nodes), which the job uses.
    start_app(ServeSettings(model=f"{registry}/livseg", roots=(str(archive), str(tmp_path))),
              token=secrets.token_hex(16), http=False)  # fmt: skip
    argv = ["--archive", str(archive), "--output", str(out), "--model", f"{registry}/livseg",
            "--max-in-flight", "1"]  # fmt: skip
    try:
        with ThreadPoolExecutor(1) as pool:
            job = pool.submit(run_job, "segment_archive", argv)
            _wait_until(lambda: any((out / "masks").glob("*.nii.gz")), job, "a study finished")
            handle = serve.get_deployment_handle("ModelServer", app_name=APP_NAME)
            node_id = handle.info.remote().result()["node"]
            (node,) = [n for n in [*nodes.worker_nodes] if n.node_id == node_id]
            nodes.remove_node(node, allow_graceful=False)
            assert job.result(timeout=600) == 0
        replacement = handle.info.remote().result()["node"]
        # the same archive again, uninterrupted, on the replacement replica
        again = [*argv[:2], "--output", str(tmp_path / "again"), *argv[4:]]
        assert run_job("segment_archive", again) == 0
        reference = mask_checksums(tmp_path / "again" / "masks")
    finally:
        stop_app()
        _keep_two_workers(nodes, extra)
    assert replacement in {n.node_id for n in nodes.worker_nodes}  # rebuilt on a live node
    assert "replica lost" in caplog.text, "no study was in flight on the lost node"
    masks = mask_checksums(out / "masks")
    summary = json.loads(max((out / "runs").glob("*.json"), key=lambda p: p.stat().st_mtime)
                         .read_text())  # fmt: skip
    assert summary["counts"]["segmented"] == len(kinds["studies"]) == len(masks)
    assert summary["counts"]["failed"] == len(kinds["corrupt"])
    keys = [r["key"] for r in pq.read_table(out / "report.parquet").to_pylist()]
    assert sorted(f"{k}.nii.gz" for k in keys) == sorted(masks), "a study reported twice or not"
    assert len(list(out.glob("ledger/*/done/*.json"))) == len(kinds["studies"])
    assert masks == reference, "masks differ from an uninterrupted run's"
