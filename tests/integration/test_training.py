"""Ray Train end to end on generated data: DDP run, checkpoints, reload outside Ray, resume."""

from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from job_helpers import check_report, removed_unless_failed, run_job

from livseg.data import read_record
from livseg.registry import register
from livseg.runtime import TORCH_THREADS_ENV
from livseg.train import (
    NonFiniteLossError,
    TrainConfig,
    build_model,
    fit,
    fit_all,
    load_checkpoint,
    read_meta,
    score_split,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def comparison(shards, tmp_path_factory, request):
    storage = tmp_path_factory.mktemp("runs")
    # Full epochs: with 4 steps an epoch (liver Dice 0.33) the two DDP workers' validation and a
    # one-CPU reload differed by 7e-6 (a clean-clone run, 2026-12-02; the cause not traced).
    cfg = TrainConfig(
        data=shards, arch="unet-resnet34", epochs=2, batch_size=8, lr=1e-3, workers=2,
        storage=str(storage), name="cmp", keep=1,
    )  # fmt: skip
    with removed_unless_failed(request, storage):  # 1.6 GB of checkpoints
        yield cfg, fit_all(cfg, ["unet-resnet34", "vnet"])


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
    """A resumed run continues the epochs, and its time limit counts from its own start: the
    first run, seemingly two hours ago, must not stop it after one epoch."""
    # Last of the tests on `comparison`: resuming adds epochs, and Ray's retention (keep=1) may
    # delete the checkpoint the earlier tests read.
    cfg, _ = comparison
    for state_file in Path(cfg.storage, cfg.name, "unet-resnet34").glob(
        "checkpoint_*/train_state.pt"
    ):
        state = torch.load(state_file, weights_only=False)
        state["state"]["started"] = time.time() - 2 * 3600  # what older checkpoints carried
        torch.save(state, state_file)
    # Two steps an epoch: the test needs the epochs to continue, not more training.
    row = fit(replace(cfg, arch="unet-resnet34", epochs=4, time_limit_min=60, steps_per_epoch=2))
    assert row["resumed_from_epoch"] == 2 and row["epochs"] == 4


def test_a_non_finite_loss_stops_the_run_naming_epoch_and_step(shards, tmp_path):
    """Adam at lr 1e30 blows the weights up after one step: the run stops at step 2 with an
    error that says so, and no checkpoint holds NaN weights."""
    cfg = TrainConfig(
        data=shards, arch="unet", epochs=2, steps_per_epoch=3, lr=1e30, workers=1,
        max_failures=0, storage=str(tmp_path), name="nan",
    )  # fmt: skip
    with pytest.raises(NonFiniteLossError, match="epoch 1, step 2") as info:
        fit(cfg)
    assert "--set lr=" in str(info.value)
    assert not list(tmp_path.rglob("checkpoint_*"))


def test_init_starts_training_from_a_checkpoints_weights(shards, trained_unet, tmp_path):
    """Fine-tuning: one step at a negligible rate keeps the trained U-Net's validation liver
    Dice (an untrained U-Net scores far below it); a checkpoint of another architecture is
    refused on the driver, before Ray runs anything."""
    cfg = TrainConfig(
        data=shards, arch="unet", epochs=1, steps_per_epoch=1, lr=1e-9, workers=1,
        cpus_per_worker=2, storage=str(tmp_path), name="init", init=trained_unet,
    )  # fmt: skip
    start = read_meta(trained_unet)["metrics"]["val_liver_dice"]
    tuned = fit(cfg)
    assert start > 0.5 and abs(tuned["val_liver_dice"] - start) < 0.02, (start, tuned)
    with pytest.raises(ValueError, match="cannot start a unet-resnet34"):
        fit(replace(cfg, arch="unet-resnet34", name="other"))


def test_gpu_request_without_gpus_is_a_clear_error(shards, tmp_path):
    cfg = TrainConfig(data=shards, gpu=True, storage=str(tmp_path))
    with pytest.raises(ValueError, match="--gpu with 2 worker"):
        fit(cfg)


def test_a_crop_not_smaller_than_the_slices_is_a_clear_error(shards, tmp_path):
    size = read_record(shards)["config"]["size"]
    with pytest.raises(ValueError, match=f"crop={size}: windows must be smaller than the shards"):
        fit(TrainConfig(data=shards, crop=size, storage=str(tmp_path)))
    with pytest.raises(ValueError, match="vnet trains on whole volumes"):
        fit(TrainConfig(data=shards, arch="vnet", crop=32, storage=str(tmp_path)))


def test_storage_that_cannot_be_written(shards, tmp_path):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(ValueError, match="--storage"):
        fit(TrainConfig(data=shards, storage=str(tmp_path / "a-file" / "runs")))


def test_incompatible_or_missing_shards(tmp_path):
    with pytest.raises(ValueError, match="no preprocess.json"):
        fit(TrainConfig(data=str(tmp_path), storage=str(tmp_path / "runs")))


def test_tumour_slices_are_repeated_to_the_share(ray_session, shards):
    from livseg.data import read_split
    from livseg.train.sampling import oversample_tumour

    train = read_split(shards, "train").select_columns(["mask", "has_tumour"]).materialize()
    total, tumour = train.count(), int(train.sum("has_tumour"))
    assert 0 < tumour < total * 0.33, (tumour, total)  # few tumour slices: oversampling acts
    sampled, repeats = oversample_tumour(train, 0.33)
    assert repeats > 1 and sampled.count() == total + (repeats - 1) * tumour
    rows = sampled.take_all()
    assert sum(r["has_tumour"] for r in rows) / len(rows) >= 0.33
    assert all(((r["mask"] == 2).any()) == r["has_tumour"] for r in rows)


@pytest.fixture(scope="module")
def share_run(shards, tmp_path_factory, request):
    """One epoch of ``unet`` with tumour oversampling, the one worker holding both CPUs of the
    test cluster (as the quality test and a 2-core pipeline run it; one torch thread under the
    suite's LIVSEG_TORCH_THREADS): its config and result."""
    storage = tmp_path_factory.mktemp("share")
    cfg = TrainConfig(
        data=shards, arch="unet", epochs=1, workers=1, cpus_per_worker=2, tumour_share=0.33,
        lr=2e-3, storage=str(storage), name="share",
    )  # fmt: skip
    with removed_unless_failed(request, storage):
        yield cfg, fit(cfg)


@pytest.mark.timeout(400)  # the hang it guards against fails fast, not at the suite's 900 s
def test_a_run_with_tumour_share_sees_the_repeated_slices(share_run, shards):
    """Through ``fit``: the epoch holds every train slice plus the repeated tumour slices, and
    the run finishes (a projection after the union once hung it)."""
    from livseg.data import read_split
    from livseg.train.sampling import tumour_repeats

    train = read_split(shards, "train").select_columns(["has_tumour"]).materialize()
    total, tumour = train.count(), int(train.sum("has_tumour"))
    repeats = tumour_repeats(total, tumour, 0.33)
    _, row = share_run
    meta = read_meta(row["checkpoint"])
    seen = meta["metrics"]["train_rows"]
    assert repeats > 1 and seen == total + (repeats - 1) * tumour, (seen, total, tumour, repeats)
    # The cap this driver read (tests/conftest.py) reached the worker holding 2 CPUs.
    assert os.environ[TORCH_THREADS_ENV] == "1" and meta["torch_threads"] == 1


def test_the_same_seed_trains_the_same_model(share_run):
    """The seed fixes the data order too (each epoch's block order and shuffle buffer): a rerun
    under a new name ends with the same weights. Before, unseeded 8-step unet runs on these
    shards ended anywhere between validation liver Dice 0.0 and 0.21, and this config with the
    seeds but without ordered blocks at 0.52 and 0.67."""
    cfg, first = share_run
    again = fit(replace(cfg, name="share-again"))
    assert again["val_liver_dice"] == first["val_liver_dice"]
    assert again["val_loss"] == first["val_loss"]
    (a, meta), (b, _) = load_checkpoint(first["checkpoint"]), load_checkpoint(again["checkpoint"])
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name
    # The steps moved the parameters from their seeded start (rebuilt as the loop builds it), so
    # the equality above is not that of two untrained models. Not a Dice floor: one epoch's Dice
    # differs from CPU to CPU (0.67 here, 0.09 on CI).
    torch.manual_seed(cfg.seed)
    start = dict(build_model(meta["arch"], meta["in_channels"], meta["classes"], "none")
                 .named_parameters())  # fmt: skip
    trained = dict(a.named_parameters())
    moved = [k for k, v in start.items() if not torch.equal(v, trained[k])]
    assert len(moved) > 0.9 * len(start), sorted(set(start) - set(moved))


def test_the_seed_sets_each_epochs_block_order(shards):
    """The training dataset's order, read as the loop's epochs read it: the same for the same
    seed (rebuilt from the shards), a new one each epoch, another one for another seed."""
    import numpy as np

    from livseg.train.runs import shared_datasets

    def epochs(seed: int, n: int = 2) -> list[list[float]]:
        """``n`` epochs, each row named by its image's sum."""
        train = shared_datasets(TrainConfig(data=shards, arch="unet", seed=seed), {})["train"]
        return [
            np.concatenate([
                b["image"].reshape(len(b["image"]), -1).astype(np.float64).sum(1)
                for b in train.iter_batches(batch_size=64)
            ]).round(3).tolist()
            for _ in range(n)
        ]  # fmt: skip

    first = epochs(0)
    assert len(first[0]) > 32 and sorted(first[0]) == sorted(first[1])  # every row each epoch
    assert first[0] != first[1]
    assert epochs(0) == first
    assert epochs(1)[0] != first[0]
