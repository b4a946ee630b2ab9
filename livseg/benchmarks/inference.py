"""Inference side by side: the model alone vs the Segmenter called
directly vs the Serve app vs the nightly archive job, on generated studies
(``livseg.serve.throughput`` and ``livseg.archive.throughput`` measure)."""

from __future__ import annotations

from typing import Any

from livseg.benchmarks.windows import ratio_bounds
from livseg.errors import UsageError
from livseg.inference import Segmenter
from livseg.io import read_volume


def _ratio(a: dict, b: dict) -> dict[str, float]:
    """Two sides' volumes/s (measured one after the other): ratio of medians, widest bounds."""
    return ratio_bounds(a["volumes_per_s"]["windows"], b["volumes_per_s"]["windows"])


def check_model(uri: str) -> None:
    """Refuse a ``--model`` the four sides cannot all run the same way: the model-alone side
    feeds 2-D slices to one network (a cascade bundle runs two, a 3-D model takes slabs, an
    ROI stage needs a liver stage)."""
    from livseg.train import is_volumetric, read_meta

    meta = read_meta(uri)
    kind = (
        "a cascade bundle" if meta.get("cascade")
        else "a 3-D model" if is_volumetric(meta["arch"])
        else "a liver-ROI tumour stage" if meta["preprocess"]["config"].get("roi")
        else ""
    )  # fmt: skip
    if kind:
        raise UsageError(
            f"--model {uri}: {kind}; the inference benchmark measures one 2-D network, give a "
            "single-stage 2-D checkpoint (unet, unet-resnet34 …) or leave --model out"
        )


def bench_inference(
    cases: int, size: int, repeats: int, gpu: bool, model: str | None = None
) -> dict[str, Any]:
    """Model alone vs direct Segmenter vs Serve on ``cases`` generated studies of ``size``²
    in-plane. ``model``: the checkpoint (folder or ``s3://``) to measure; without it, a
    unet-resnet34 trained for two steps (speed does not depend on the weights)."""
    import secrets
    import shutil
    import socket

    import ray
    import torch

    from livseg.archive import archive_rate
    from livseg.data import PreprocessConfig, preprocess
    from livseg.io import discover_cases
    from livseg.runtime import init_ray, torch_threads
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
    from livseg.train import TrainConfig, fit, read_meta

    if model:
        check_model(model)  # here too for callers other than run_benchmarks (cheap: meta only)
    init_ray()
    cpus = int(ray.cluster_resources().get("CPU", 1))
    device, batch = ("cuda", 64) if gpu else ("cpu", 16)
    tmp = scratch()
    try:
        checkpoint = model
        # Training (without --model) needs a validation case besides the studies.
        write_dataset(tmp / "raw", cases if checkpoint else max(cases, 3), size=size)
        if not checkpoint:
            shards = str(tmp / "shards")
            preprocess(str(tmp / "raw"), shards, PreprocessConfig(size=min(size, 256)))
            checkpoint = fit(TrainConfig(
                data=shards, arch="unet-resnet34", epochs=1, steps_per_epoch=2, workers=1, gpu=gpu,
                cpus_per_worker=1 if gpu else cpus, storage=str(tmp / "runs"), name="bench",
            ))["checkpoint"]  # fmt: skip
        meta = read_meta(checkpoint)
        studies = [case.image_uri for case in discover_cases(str(tmp / "raw"))][:cases]
        threads = torch_threads(cpus)  # the replica gets these cores and as many threads
        if not gpu:
            torch.set_num_threads(threads)
        segmenter = Segmenter.from_checkpoint(checkpoint, device, batch)
        overlapped = direct_rate(segmenter, studies, tmp, repeats)
        serial = direct_rate(segmenter, studies, tmp, repeats, overlap=False)
        # The baseline is the faster plain loop here (where the model's threads use every core,
        # overlapping studies may not pay); the archive's adds a thumbnail per study, as the job.
        overlap = overlapped["volumes_per_s"]["median"] >= serial["volumes_per_s"]["median"]
        direct = overlapped if overlap else serial
        direct_archive = direct_rate(segmenter, studies, tmp, repeats, overlap, thumbnails=True)
        total = sum(read_volume(s).array.shape[2] for s in studies)
        alone = model_rate(segmenter, total, repeats)
        del segmenter
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        settings = ServeSettings(
            model=checkpoint, port=port, roots=(str(tmp),), qa=False, device=device,
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
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    fraction = direct["slices_per_s"]["median"] / alone["median"]
    return {
        "device": device if gpu else f"cpu x{cpus}", "torch_threads": None if gpu else threads,
        "studies": cases, "arch": meta["arch"],
        "in_plane": size, "model_input": meta["preprocess"]["config"]["size"],
        "batch_size": batch, "repeats": repeats,
        "model_slices_per_s": alone, "direct_overlapped": overlapped, "direct_serial": serial,
        "direct_baseline": "overlapped" if overlap else "serial",
        "overlap_gain": _ratio(overlapped, serial),
        "serve": served,
        "serve_vs_direct": _ratio(served, direct), "serve_vs_direct_target": 0.8,
        "direct_fraction_of_model": round(fraction, 3),
        "direct_with_thumbnails": direct_archive, "archive": nightly,
        "archive_vs_direct": _ratio(nightly, direct_archive), "archive_vs_direct_target": 0.8,
    }  # fmt: skip
