"""Ray Train end to end on generated data: DDP run, checkpoints, reload outside Ray, resume."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import pytest
from job_helpers import check_report, run_job

from livseg.checkpoint import load_checkpoint, read_meta
from livseg.registry import register
from livseg.runs import fit, fit_all
from livseg.scoring import score_split
from livseg.shards import read_record
from livseg.train import TrainConfig

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def comparison(shards, tmp_path_factory):
    storage = tmp_path_factory.mktemp("runs")
    cfg = TrainConfig(
        data=shards, arch="unet-resnet34", epochs=2, batch_size=8, lr=1e-3, workers=2,
        storage=str(storage), name="cmp", keep=1,
    )  # fmt: skip
    rows = fit_all(cfg, ["unet-resnet34", "vnet"])
    return cfg, rows


def test_two_worker_runs_report_every_epoch_and_write_outputs(comparison):
    cfg, rows = comparison
    run_root = f"{cfg.storage}/{cfg.name}"
    with open(f"{run_root}/comparison.csv") as handle:
        table = list(csv.DictReader(handle))
    assert [r["arch"] for r in table] == ["unet-resnet34", "vnet"]
    for row in rows:
        arch_dir = f"{run_root}/{row['arch']}"
        with open(f"{arch_dir}/history.csv") as handle:
            history = list(csv.DictReader(handle))
        epochs = 2 if row["arch"] == "unet-resnet34" else len(history)
        assert [int(h["epoch"]) for h in history] == list(range(1, epochs + 1))
        assert all(0 <= float(h["val_liver_dice"]) <= 1 for h in history)
        png = open(f"{arch_dir}/curves.png", "rb").read()
        assert png.startswith(PNG_MAGIC) and len(png) > 5_000
        meta = read_meta(row["checkpoint"])
        assert meta["arch"] == row["arch"] and meta["preprocess"]["stats"]["std"] > 0
        assert meta["label_map"] == {"background": 0, "liver": 1, "tumour": 2}
    assert rows[0]["parameters"] > 20_000_000  # ResNet34 U-Net


def test_checkpoint_reloads_without_ray_and_reproduces_validation(comparison, shards):
    _, rows = comparison
    for row in rows:
        meta = read_meta(row["checkpoint"])
        model, _ = load_checkpoint(row["checkpoint"])
        assert not model.training
        scored = score_split(row["checkpoint"], shards, "val")
        # the workers' validation (two DDP shards, reduced counts) = a plain reload on one CPU
        assert scored["liver_dice"] == pytest.approx(meta["metrics"]["val_liver_dice"], abs=1e-6)


def test_evaluate_models_compares_architectures_on_the_test_split(comparison, shards, tmp_path):
    """jobs/evaluate.py --model A --model B --data SHARDS: the study's comparison table."""
    _, rows = comparison
    out = tmp_path / "eval"
    # the first model as a registry entry (its current version), the second as a checkpoint
    register(str(tmp_path / "models"), "livseg", rows[0]["checkpoint"])
    argv = ["--data", shards, "--out", str(out), "--mc", "20"]
    argv += ["--model", str(tmp_path / "models" / "livseg"), "--model", rows[1]["checkpoint"]]
    assert run_job("evaluate", argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    test_ids = read_record(shards)["splits"]["test"]["case_ids"]
    assert list(summary["models"]) == ["unet-resnet34", "vnet"]
    for model in summary["models"].values():
        assert model["cases"] == len(test_ids) and not model["failed"]
        assert model["loss"] == {"dice": 0.8, "focal": 0.2, "gamma": 2.0}
    with open(out / "per_case.csv") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 2 * len(test_ids)
    with open(out / "comparison.csv") as handle:
        compared = list(csv.DictReader(handle))
    assert [r["model"] for r in compared] == ["unet-resnet34", "vnet"]
    assert all(0 <= float(r["liver_dice_mean"]) <= 1 for r in compared)
    assert {int(r["case_id"]) for r in table} == set(test_ids)
    # scored on the original grid (64 px generated cases), with model probabilities
    assert all(r["spacing"] and 0 <= float(r["liver_dice"]) <= 1 for r in table)
    assert all(0 <= float(r["liver_auc"]) <= 1 for r in table)
    names = check_report(out)
    assert sum(n.startswith("curves-") for n in names) == 2


def test_rerunning_a_name_resumes_from_its_checkpoint(comparison):
    # Last of the tests on `comparison`: resuming adds epochs, and Ray's retention (keep=1) may
    # delete the checkpoint the earlier tests read.
    cfg, _ = comparison
    row = fit(replace(cfg, arch="unet-resnet34", epochs=3))
    assert row["resumed_from_epoch"] == 2 and row["epochs"] == 3


def test_gpu_request_without_gpus_is_a_clear_error(shards, tmp_path):
    cfg = TrainConfig(data=shards, gpu=True, storage=str(tmp_path))
    with pytest.raises(ValueError, match="--gpu with 2 worker"):
        fit(cfg)


def test_storage_that_cannot_be_written(shards, tmp_path):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(ValueError, match="--storage"):
        fit(TrainConfig(data=shards, storage=str(tmp_path / "a-file" / "runs")))


def test_incompatible_or_missing_shards(tmp_path):
    with pytest.raises(ValueError, match="no preprocess.json"):
        fit(TrainConfig(data=str(tmp_path), storage=str(tmp_path / "runs")))
