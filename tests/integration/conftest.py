"""Fixtures shared by the integration tests."""

from __future__ import annotations

import pytest
from job_helpers import shared_once

from livseg.data import PreprocessConfig, preprocess
from livseg.synthetic import write_dataset


@pytest.fixture(scope="session")
def shards(ray_session, tmp_path_factory):
    """8 generated cases at 64² preprocessed once (read-only for the tests that train on them)."""

    def build(root):
        write_dataset(root / "raw", 8, seed=11, size=64)
        cfg = PreprocessConfig(size=64, volume_size=(32, 32, 32), other_fraction=0.2)
        preprocess(str(root / "raw"), str(root / "shards"), cfg)
        return str(root / "shards")

    return shared_once(tmp_path_factory, "small-data", build)


@pytest.fixture(scope="session")
def trained_unet(shards, tmp_path_factory):
    """A plain U-Net trained on ``shards`` (liver Dice ≈ 0.9 on unseen generated cases); the
    checkpoint URI. Shared by the serving and archive tests, which register it as they need."""
    from livseg.train import TrainConfig, fit

    def build(root):
        cfg = TrainConfig(
            data=shards, arch="unet", epochs=5, batch_size=8, lr=2e-3, workers=1,
            cpus_per_worker=2, storage=str(root), name="shared", keep=1,
        )  # fmt: skip
        return fit(cfg)["checkpoint"]

    return shared_once(tmp_path_factory, "trained-unet", build)
