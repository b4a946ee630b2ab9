"""Runs that read the same shards the same way share one materialised copy of their datasets."""

from __future__ import annotations

from dataclasses import replace

from livseg.train import TrainConfig, runs


def test_runs_share_datasets_only_when_they_read_the_same_way(monkeypatch):
    shared: dict = {}
    made = []  # (arch, copies held while this one was read)

    def fake(cfg):
        made.append((cfg.arch, len(shared)))
        return {"n": len(made)}

    monkeypatch.setattr(runs, "_datasets", fake)
    unet = TrainConfig(data="/shards", arch="unet")
    first = runs.shared_datasets(unet, shared)
    assert runs.shared_datasets(replace(unet, arch="unet-resnet34", lr=3e-4), shared) is first
    assert made == [("unet", 0)]
    # a 3-D model reads volumes; the slices' copy is dropped before the volumes are read
    volumes = runs.shared_datasets(replace(unet, arch="vnet"), shared)
    assert volumes is not first and made[-1] == ("vnet", 0) and len(shared) == 1
    # volumes are never oversampled: the tumour share does not make them other datasets
    assert runs.shared_datasets(replace(unet, arch="vnet", tumour_share=0.3), shared) is volumes
    # other shards, or oversampled tumour slices, are other datasets
    runs.shared_datasets(replace(unet, data="/other"), shared)
    runs.shared_datasets(replace(unet, data="/other", tumour_share=0.3), shared)
    assert made == [("unet", 0), ("vnet", 0), ("unet", 0), ("unet", 0)] and len(shared) == 1
