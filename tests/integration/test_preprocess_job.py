"""The Ray Data preprocessing job end to end: local folder, bad inputs, S3 protocol, resume."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import boto3
import nibabel as nib
import numpy as np
import pyarrow.parquet as pq
import pytest

from livseg import data as shards
from livseg.data import IntensityStats, PreprocessConfig, preprocess, slice_samples
from livseg.io import read_case
from livseg.synthetic import write_dataset

CFG = PreprocessConfig(size=64, context=1, volume_size=(32, 32, 32), other_fraction=0.2)
GOOD = 8


def _add_bad_inputs(root: Path) -> dict[int, str]:
    """Broken files beside good cases; returns case id → expected error text."""
    (root / "volume-20.nii.gz").write_bytes(b"")
    (root / "segmentation-20.nii.gz").write_bytes(b"")
    good = (root / "volume-0.nii.gz").read_bytes()
    (root / "volume-21.nii.gz").write_bytes(good[: len(good) // 3])
    shutil.copy(root / "segmentation-0.nii.gz", root / "segmentation-21.nii.gz")
    (root / "volume-9.nii").write_text("patient list, not an image\n" * 20)
    shutil.copy(root / "segmentation-0.nii.gz", root / "segmentation-9.nii.gz")
    affine = np.diag([0.8, 0.8, 2.0, 1.0])
    nib.save(nib.Nifti1Image(np.zeros((32, 32, 8, 2), np.int16), affine), root / "volume-22.nii.gz")
    nib.save(
        nib.Nifti1Image(np.zeros((32, 32, 8), np.uint8), affine), root / "segmentation-22.nii.gz"
    )
    shutil.copy(root / "volume-1.nii.gz", root / "volume-23.nii.gz")
    nib.save(
        nib.Nifti1Image(np.zeros((10, 10, 10), np.uint8), affine), root / "segmentation-23.nii.gz"
    )
    return {
        20: "empty file",
        21: "truncated",
        9: "not a NIfTI",
        22: "4-D image",
        23: "not on the voxel grid",
    }


@pytest.fixture(scope="module")
def lits(tmp_path_factory):
    root = tmp_path_factory.mktemp("lits")
    write_dataset(root, GOOD, seed=3, size=64)
    expected = _add_bad_inputs(root)
    return root, expected


@pytest.fixture(scope="module")
def local_run(ray_session, lits, tmp_path_factory):
    root, _ = lits
    out = tmp_path_factory.mktemp("shards")
    record = preprocess(str(root), str(out), CFG)
    return out, record


def test_bad_inputs_are_listed_and_good_cases_processed(local_run, lits):
    out, record = local_run
    _, expected = lits
    assert record["cases"] == {"ok": GOOD, "failed": len(expected)}
    index = pq.read_table(out / "index.parquet").to_pylist()
    by_id = {row["case_id"]: row for row in index}
    for case_id, text in expected.items():
        assert by_id[case_id]["status"] == "error"
        assert text in by_id[case_id]["error"], by_id[case_id]["error"]
    for case_id in range(GOOD):
        row = by_id[case_id]
        assert row["status"] == "ok" and row["liver_voxels"] > 0, row
        assert row["filename"] == f"volume-{case_id}.nii.gz"
        assert row["mask_filename"] == f"segmentation-{case_id}.nii.gz"


def test_splits_non_empty_and_disjoint(local_run):
    out, record = local_run
    seen: dict[int, str] = {}
    for split in ("train", "val", "test"):
        data = shards.load_split_numpy(str(out), split)
        ids = set(np.unique(data["case_id"]).tolist())
        assert ids, f"{split} is empty"
        assert ids == set(record["splits"][split]["case_ids"])
        for case_id in ids:
            assert case_id not in seen, f"case {case_id} in {seen[case_id]} and {split}"
            seen[case_id] = split
        assert len(data["mask"]) == record["splits"][split]["slices"]
    assert sorted(seen) == list(range(GOOD))


def test_rows_reconstruct_the_slices(local_run, lits):
    out, record = local_run
    root, _ = lits
    stats = IntensityStats(**record["stats"])
    data = shards.load_split_numpy(str(out), "train")
    assert data["image"].shape[1:] == (3, 64, 64) and data["image"].dtype == np.float16
    assert data["mask"].shape[1:] == (64, 64) and data["mask"].dtype == np.uint8
    rng = np.random.default_rng(0)
    for row in rng.choice(len(data["mask"]), size=4, replace=False):
        case_id, z = int(data["case_id"][row]), int(data["slice_index"][row])
        volume, labels = read_case(
            str(root / f"volume-{case_id}.nii.gz"), str(root / f"segmentation-{case_id}.nii.gz")
        )
        direct = slice_samples(volume.array, labels, np.array([z]), CFG, stats)
        np.testing.assert_array_equal(data["image"][row], direct["image"][0])
        np.testing.assert_array_equal(data["mask"][row], direct["mask"][0])
        assert bool(data["has_liver"][row]) == bool((direct["mask"][0] > 0).any())
    # every liver slice of every training case is kept
    for case_id in np.unique(data["case_id"]):
        _, labels = read_case(
            str(root / f"volume-{case_id}.nii.gz"), str(root / f"segmentation-{case_id}.nii.gz")
        )
        liver_z = set(np.flatnonzero((labels > 0).any(axis=(0, 1))).tolist())
        kept = set(data["slice_index"][data["case_id"] == case_id].tolist())
        assert liver_z <= kept


def test_record_and_volume_shards(local_run):
    out, record = local_run
    saved = json.loads((out / "preprocess.json").read_text())
    assert saved["stats"]["std"] > 0 and 60 < saved["stats"]["mean"] < 160
    assert saved["config"]["size"] == 64 and saved["label_map"]["tumour"] == 2
    volumes = shards.load_split_numpy(str(out), "train", kind="volumes")
    assert volumes["image"].shape[1:] == (1, 32, 32, 32)
    assert len(volumes["case_id"]) == record["splits"]["train"]["cases"]
    assert set(np.unique(volumes["mask"])) <= {0, 1, 2} and (volumes["mask"] == 1).any()
    # a few big files: one per split at this size, one row group each
    files = list((out / "slices" / "train").glob("*.parquet"))
    assert len(files) == 1 and pq.ParquetFile(files[0]).metadata.num_row_groups == 1


def test_ray_dataset_reader_gives_torch_batches(local_run):
    from ray.data import DataContext

    out, _ = local_run
    reader = DataContext.get_current().use_datasource_v2
    ds = shards.read_split(str(out), "val")
    assert DataContext.get_current().use_datasource_v2 == reader  # chosen for its read only
    # The V1 reader: V2 would list files with a ListFiles operator (32 footer actors per read).
    plan = shards.read_split(str(out), "val").materialize().stats()
    assert "ReadParquet" in plan and "ListFiles" not in plan
    images, masks = next(shards.torch_batches(ds, batch_size=4))
    assert tuple(images.shape[1:]) == (3, 64, 64) and tuple(masks.shape[1:]) == (64, 64)
    assert str(images.dtype) == "torch.float32" and str(masks.dtype) == "torch.int64"


def test_rerun_resumes(local_run, lits):
    out, _ = local_run
    root, _ = lits
    again = preprocess(str(root), str(out), CFG)
    assert again["resumed"] == "already complete"
    # an interrupted run: the volume shards finished, the slice shards and the record did not
    volume_files = {p: p.stat().st_mtime_ns for p in (out / "volumes").rglob("*.parquet")}
    (out / "preprocess.json").unlink()
    (out / "slices" / "_livseg_done.json").unlink()
    shutil.rmtree(out / "slices" / "val")
    resumed = preprocess(str(root), str(out), CFG)
    assert "resumed" not in resumed and resumed["splits"]["val"]["slices"] > 0
    assert resumed["splits"] == again["splits"]
    assert {p: p.stat().st_mtime_ns for p in (out / "volumes").rglob("*.parquet")} == volume_files


def test_s3_gives_identical_shards(ray_session, s3_server, lits, local_run):
    root, _ = lits
    out, record = local_run
    bucket = s3_server("lits-raw")
    client = boto3.client("s3")
    for path in root.rglob("*"):
        if path.is_file():
            client.upload_file(str(path), "lits-raw", f"data/{path.relative_to(root)}")
    s3_out = f"{bucket}/shards"
    s3_record = preprocess(f"{bucket}/data", s3_out, CFG)
    assert s3_record["cases"] == record["cases"]
    assert s3_record["stats"] == record["stats"]
    for split in ("train", "val", "test"):
        for kind in ("slices", "volumes"):
            local = shards.load_split_numpy(str(out), split, kind)
            remote = shards.load_split_numpy(s3_out, split, kind)
            for name in local:  # same rows, same order (cases in id order: the test below)
                np.testing.assert_array_equal(local[name], remote[name])
    listed = client.list_objects_v2(Bucket="lits-raw", Prefix="shards/")["Contents"]
    assert any(o["Key"].endswith("index.parquet") for o in listed)


def test_files_hold_cases_in_order_whatever_finishes_first(ray_session, tmp_path):
    """A shard file bundles cases in the order the dataset gives them, not in the order their
    tasks finish (case 0, slowest, still comes first), so the same input gives the same files
    and a run with one seed trains the same model."""
    import ray

    def case_rows(batch: dict) -> dict:  # three rows of one case; case 0's task ends last
        case = int(batch["case_id"][0])
        if case == 0:
            time.sleep(2.0)
        return {"case_id": np.full(3, case), "slice_index": np.arange(3), "split": ["train"] * 3}

    ds = ray.data.from_items([{"case_id": c} for c in range(6)], override_num_blocks=6)
    # Tasks side by side, as preprocess runs them (by default Ray Data ran one at a time here).
    ds.context.op_resource_reservation_enabled = False
    shards.write_split_shards(ds.map_batches(case_rows, batch_size=1), str(tmp_path), 100)
    files = list((tmp_path / "train").glob("*.parquet"))
    assert len(files) == 1
    ids = pq.read_table(files[0]).column("case_id").to_numpy()
    assert ids.tolist() == [c for c in range(6) for _ in range(3)]
