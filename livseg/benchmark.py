"""Side-by-side throughput measurements; ratios, never absolute targets in tests.

``preprocess``: the Ray Data job (``livseg.data.preprocess``) against a plain single-process
loop that calls the same per-case functions over the same cases and writes the same Parquet.
``metrics``: seconds of one ``score_case`` on a LiTS-sized synthetic pair on one CPU, against
an absolute 10 s target (there is no baseline to compare with).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from livseg.config import to_dict
from livseg.data import (
    PreprocessConfig,
    assign_rows,
    case_item,
    case_slices,
    inspect_case,
    normalise_volumes,
    rows_per_file,
    stats_from_histogram,
    write_split_tables,
)
from livseg.io import discover_cases


def serial_preprocess(input_uri: str, output: Path, cfg: PreprocessConfig) -> int:
    """The baseline: one process, a for-loop over cases, same functions and shard format."""
    rows = [inspect_case(case_item(c), to_dict(cfg)) for c in discover_cases(input_uri)]
    assign_rows(rows, cfg)
    ok = [r for r in rows if r["status"] == "ok"]
    hist = np.sum([r["histogram"] for r in ok if r["split"] == "train"], axis=0)
    stats = stats_from_histogram(hist, cfg.window[0]).__dict__
    keys = ("case_id", "image_uri", "mask_uri", "split")
    written, pending, limit = 0, [], rows_per_file(cfg, "slices")
    for i, r in enumerate(ok):
        # Flush like the Ray sink does (about rows_per_file rows a file), never all in memory.
        batch = {k: np.array([r[k]]) for k in keys}
        pending.append(case_slices(batch, to_dict(cfg), stats, str(output / "slices" / "_failed")))
        if sum(map(len, pending)) >= limit or i == len(ok) - 1:
            written += sum(
                write_split_tables(str(output / "slices"), pa.concat_tables(pending)).values()
            )
            pending = []
    grids = {k: np.stack([r[k] for r in ok]) for k in ("case_id", "grid_hu", "grid_mask")}
    splits = {int(r["case_id"]): r["split"] for r in ok}
    write_split_tables(str(output / "volumes"), normalise_volumes(grids, stats, splits))
    return written


def _warm(row: dict[str, Any]) -> dict[str, Any]:
    import livseg.data  # noqa: F401 - imports cv2, nibabel, scipy like a real task

    return row


def bench_preprocess(
    cases: int, size: int, seed: int = 0, data: str | None = None
) -> dict[str, Any]:
    """Time Ray Data vs the serial loop on ``data`` (a LiTS folder) or on ``cases`` volumes
    generated at ``size`` px."""
    import ray

    from livseg.data import preprocess
    from livseg.runtime import init_ray
    from livseg.synthetic import write_dataset

    init_ray()
    cfg = PreprocessConfig(size=min(size, 256), seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(data or Path(tmp, "raw"))
        if data is None:
            write_dataset(raw, cases, seed=seed, size=size)
        else:
            cases = len(discover_cases(data))
        # Warm the worker pool so both sides start from running processes with our modules
        # imported (the serial loop runs in this process, which has them already).
        ray.data.range(8, override_num_blocks=8).map(_warm).materialize()
        t0 = time.perf_counter()
        record = preprocess(str(raw), str(Path(tmp, "ray")), cfg)
        ray_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        slices = serial_preprocess(str(raw), Path(tmp, "serial"), cfg)
        serial_s = time.perf_counter() - t0
    ray_slices = sum(s["slices"] for s in record["splits"].values())
    if ray_slices != slices:
        raise RuntimeError(f"Ray wrote {ray_slices} slices, the loop {slices}: not comparable")
    return {
        "stage": "preprocess",
        "cases": cases,
        "volume_size": size,
        "slice_size": cfg.size,
        "slices": slices,
        "cpus": ray.cluster_resources().get("CPU"),
        "ray_data_s": round(ray_s, 2),
        "serial_loop_s": round(serial_s, 2),
        "speedup": round(serial_s / ray_s, 2),
        "target": 1.6,
    }


def write_result(result: dict[str, Any], out_dir: str = ".") -> Path:
    path = Path(out_dir, f"benchmark-{result['stage']}.json")
    path.write_text(json.dumps(result, indent=2))
    return path


def plain_train_rate(shards: str, cfg: Any, steps: int, warmup: int = 3) -> float:
    """Rows/s of a plain PyTorch loop over the train split held in memory (same model, batch,
    loss, augmentation and ``train_epoch`` as the workers; no Ray, no DDP)."""
    import torch

    from livseg.data import load_split_numpy, read_record
    from livseg.train import build_loss, build_model, memory_format, train_epoch

    record = read_record(shards)
    arrays = load_split_numpy(shards, "train")
    images, masks = torch.from_numpy(arrays["image"]), torch.from_numpy(arrays["mask"])
    device = torch.device("cuda" if cfg.gpu else "cpu")
    classes = len(record["label_map"])
    model = build_model(cfg.arch, record["channels"], classes).to(device)
    model = model.to(memory_format=memory_format(4))  # as the Ray workers do
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    loss_fn, gen = build_loss(cfg.dice, cfg.focal, cfg.gamma), torch.Generator(device=device)

    def batches(n: int):
        order = torch.randperm(len(images))
        for i in range(n):
            idx = order[(i * cfg.batch_size + torch.arange(cfg.batch_size)) % len(images)]
            yield {"image": images[idx].to(device), "mask": masks[idx].to(device)}

    steps = min(steps, len(images) // cfg.batch_size)  # a Ray epoch also ends with the shard
    run = type(cfg)(**{**cfg.__dict__, "steps_per_epoch": 0})
    train_epoch(model, batches(warmup), loss_fn, opt, run, gen, classes, device)
    if cfg.gpu:
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    train_epoch(model, batches(steps), loss_fn, opt, run, gen, classes, device)
    if cfg.gpu:
        torch.cuda.synchronize(device)
    return steps * cfg.batch_size / (time.perf_counter() - started)


def bench_train(
    cases: int, size: int, steps: int, batch_size: int, gpu: bool, arch: str = "unet-resnet34"
) -> dict[str, Any]:
    """Ray Train (shards → Ray Data → one worker) vs the plain loop: training rows/s ratio."""
    import ray

    from livseg.data import preprocess
    from livseg.runtime import init_ray
    from livseg.synthetic import write_dataset
    from livseg.train import TrainConfig, fit

    init_ray()
    cpus = int(ray.cluster_resources().get("CPU", 1))
    with tempfile.TemporaryDirectory() as tmp:
        write_dataset(Path(tmp, "raw"), cases, size=size)
        shards = str(Path(tmp, "shards"))
        preprocess(str(Path(tmp, "raw")), shards, PreprocessConfig(size=size))
        cfg = TrainConfig(
            data=shards, arch=arch, epochs=3, steps_per_epoch=steps, batch_size=batch_size,
            lr=1e-3, workers=1, gpu=gpu, cpus_per_worker=1 if gpu else cpus,
            storage=str(Path(tmp, "runs")), name="bench",
        )  # fmt: skip
        row = fit(cfg)
        history = _history(Path(row["run_dir"], "history.csv"))
        ray_rate = max(float(h["train_rows_per_s"]) for h in history[1:])  # after warm-up
        if not gpu:
            import torch

            torch.set_num_threads(cpus)
        plain_rate = plain_train_rate(shards, cfg, steps)
    return {
        "stage": "train",
        "arch": arch,
        "device": "gpu" if gpu else f"cpu x{cpus}",
        "slice_size": size,
        "batch_size": batch_size,
        "steps": steps,
        "ray_train_rows_per_s": round(ray_rate, 2),
        "plain_loop_rows_per_s": round(plain_rate, 2),
        "ratio": round(ray_rate / plain_rate, 3),
        "target": 0.90 if gpu else 0.85,
    }


def _history(path: Path) -> list[dict[str, str]]:
    import csv

    with open(path) as handle:
        return list(csv.DictReader(handle))


def metrics_case(size: int = 512, slices: int = 500, seed: int = 0) -> dict[str, Any]:
    """A synthetic (size, size, slices) pair: an ellipsoid liver of ~1.5 M voxels (at 512²×500)
    with five spherical tumours; the prediction shifted by (2, −1, 1) voxels, one tumour missed,
    one false-positive blob far from the liver and a probability map from both."""
    rng = np.random.default_rng(seed)
    shape, k = (size, size, slices), size / 512
    ref = np.zeros(shape, np.uint8)
    centre = np.array([0.49 * size, 0.5 * size, 0.5 * slices])
    axes = np.array([90 * k, 70 * k, 57 * slices / 500])
    lo, hi = (centre - axes - 1).astype(int), (centre + axes + 2).astype(int)
    x, y, z = np.ogrid[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    d = ((x - centre[0]) / axes[0]) ** 2 + ((y - centre[1]) / axes[1]) ** 2
    d = d + ((z - centre[2]) / axes[2]) ** 2
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    ref[box][d <= 1] = 1
    tumours = []
    for _ in range(5):
        c = centre + rng.uniform(-0.5, 0.5, 3) * axes
        radius = rng.uniform(3, 12) * k
        t = ((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2 <= radius**2) & (d <= 1)
        ref[box][t] = 2
        tumours.append(t)
    pred = np.roll(ref, (2, -1, 1), axis=(0, 1, 2))
    miss = np.roll(tumours[0], (2, -1, 1), axis=(0, 1, 2))
    pred[box][miss & (pred[box] == 2)] = 1
    far = tuple(slice(int(0.05 * n), int(0.05 * n) + max(2, int(10 * k))) for n in shape)
    pred[far] = 1
    probs = np.empty((3, *shape), np.float32)
    for c in range(3):
        probs[c] = np.where(pred == c, np.float32(0.8), np.float32(0.1))
    return {"pred": pred, "ref": ref, "spacing": (0.7, 0.7, 0.8), "probs": probs}


def bench_metrics(size: int = 512, slices: int = 500, seed: int = 0) -> dict[str, Any]:
    """Seconds of one ``score_case`` on a LiTS-sized synthetic pair, without and with probs.

    Runs pinned to one CPU (``os.sched_setaffinity`` where the OS has it). score_case's numpy
    element-wise work, scipy.ndimage and the KDTree queries are single-threaded anyway; nothing
    in it calls BLAS or torch.
    """
    import os

    from livseg.evaluate import score_case

    case = metrics_case(size, slices, seed)
    pinned = hasattr(os, "sched_setaffinity")
    cpus = os.sched_getaffinity(0) if pinned else set()
    if pinned:
        os.sched_setaffinity(0, {min(cpus)})
    try:
        t0 = time.perf_counter()
        row = score_case(case["pred"], case["ref"], case["spacing"])
        labels_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        score_case(case["pred"], case["ref"], case["spacing"], case["probs"])
        probs_s = time.perf_counter() - t0
    finally:
        if pinned:
            os.sched_setaffinity(0, cpus)
    return {
        "stage": "metrics",
        "shape": list(case["ref"].shape),
        "liver_voxels": row["liver_ref_voxels"],
        "tumour_voxels": row["tumour_ref_voxels"],
        "one_cpu": pinned,
        "score_case_s": round(labels_s, 2),
        "score_case_with_probs_s": round(probs_s, 2),
        "target_s": 10.0,
    }
