"""Inference side by side: the model alone vs the Segmenter called
directly vs the Serve app vs the nightly archive job, on generated studies
(``livseg.serve.throughput`` and ``livseg.archive.throughput`` measure)."""

from __future__ import annotations

from typing import Any

from livseg.benchmarks.windows import ratio_bounds
from livseg.inference import Segmenter
from livseg.io import read_volume


def _ratio(a: dict, b: dict) -> dict[str, float]:
    """Two sides' volumes/s (measured one after the other): ratio of medians, widest bounds."""
    return ratio_bounds(a["volumes_per_s"]["windows"], b["volumes_per_s"]["windows"])


def bench_inference(cases: int, size: int, repeats: int, gpu: bool) -> dict[str, Any]:
    """Model alone vs direct Segmenter vs Serve on ``cases`` generated studies of ``size``²
    in-plane (a briefly trained unet-resnet34; speed does not depend on its weights)."""
    import secrets
    import shutil
    import socket

    import ray
    import torch

    from livseg.archive import archive_rate
    from livseg.data import PreprocessConfig, preprocess
    from livseg.io import discover_cases
    from livseg.runtime import init_ray
    from livseg.serve import (
        ServeSettings,
        direct_rate,
        model_rate,
        scratch,
        serve_rate,
        start_app,
        stop_app,
    )  # fmt: skip
    from livseg.synthetic import write_dataset
    from livseg.train import TrainConfig, fit

    init_ray()
    cpus = int(ray.cluster_resources().get("CPU", 1))
    device, batch = ("cuda", 64) if gpu else ("cpu", 16)
    tmp = scratch()
    write_dataset(tmp / "raw", max(cases, 3), size=size)  # training needs a validation case
    shards = str(tmp / "shards")
    preprocess(str(tmp / "raw"), shards, PreprocessConfig(size=min(size, 256)))
    row = fit(TrainConfig(
        data=shards, arch="unet-resnet34", epochs=1, steps_per_epoch=2, workers=1, gpu=gpu,
        cpus_per_worker=1 if gpu else cpus, storage=str(tmp / "runs"), name="bench",
    ))  # fmt: skip
    studies = [case.image_uri for case in discover_cases(str(tmp / "raw"))][:cases]
    if not gpu:
        torch.set_num_threads(cpus)  # the replica gets the same cores
    segmenter = Segmenter.from_checkpoint(row["checkpoint"], device, batch)
    overlapped = direct_rate(segmenter, studies, tmp, repeats)
    serial = direct_rate(segmenter, studies, tmp, repeats, overlap=False)
    # The baseline is the faster plain loop here (on 2 cores the model's threads use both, so
    # overlapping studies may not pay); the archive's adds a thumbnail per study, as the job.
    overlap = overlapped["volumes_per_s"]["median"] >= serial["volumes_per_s"]["median"]
    direct = overlapped if overlap else serial
    direct_archive = direct_rate(segmenter, studies, tmp, repeats, overlap, thumbnails=True)
    total = sum(read_volume(s).array.shape[2] for s in studies)
    model = model_rate(segmenter, total, repeats)
    del segmenter
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = ServeSettings(
        model=row["checkpoint"], port=port, roots=(str(tmp),), qa=False, device=device,
        batch_size=batch, cpus_per_replica=1 if gpu else cpus, gpus_per_replica=int(gpu),
    )  # fmt: skip
    try:
        served = serve_rate(start_app(settings), None, studies, tmp, repeats)
    finally:
        stop_app()
    archive = tmp / "archive"  # the studies only (the raw folder also holds reference masks)
    archive.mkdir()
    for study in studies:
        shutil.copy(study, archive)
    start_app(settings, token=secrets.token_hex(24), http=False)  # handles only, as the job's
    try:
        nightly = archive_rate(str(archive), tmp / "nights", len(studies), total, repeats)
    finally:
        stop_app()
        shutil.rmtree(tmp, ignore_errors=True)
    fraction = direct["slices_per_s"]["median"] / model["median"]
    return {
        "device": device if gpu else f"cpu x{cpus}", "studies": cases,
        "in_plane": size, "model_input": min(size, 256), "batch_size": batch, "repeats": repeats,
        "model_slices_per_s": model, "direct_overlapped": overlapped, "direct_serial": serial,
        "direct_baseline": "overlapped" if overlap else "serial",
        "overlap_gain": _ratio(overlapped, serial),
        "serve": served,
        "serve_vs_direct": _ratio(served, direct), "serve_vs_direct_target": 0.8,
        "direct_fraction_of_model": round(fraction, 3),
        "direct_with_thumbnails": direct_archive, "archive": nightly,
        "archive_vs_direct": _ratio(nightly, direct_archive), "archive_vs_direct_target": 0.8,
    }  # fmt: skip
