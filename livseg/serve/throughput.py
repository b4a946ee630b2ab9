"""Inference throughput side by side: the model alone, the Segmenter called directly, and the
same studies through the Serve app. Same model, studies, batch size, warm-up and repeats
(``livseg.benchmarks.inference`` runs them on generated studies).

- ``model``: forward passes of device-resident random slabs (the ceiling; no pre/post work);
- ``direct``: one process reads each study, segments it (preprocessing on the model's device,
  post-processing, statistics) and writes the mask: one study after another, or 4 threads (as
  many studies in flight as through Serve) overlapping one study's reading, statistics and
  writing with another's model passes; the faster of the two is the baseline;
- ``serve``: ``POST /v1/segment-uri`` for the same studies, ``concurrency`` in flight, so the
  replica decodes one study while the model runs another.

Each figure is the median of ``repeats`` timed windows (min, max and the windows beside it).
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from livseg.inference import Segmenter, analyse_study, thumbnail_png
from livseg.io import read_volume, storage, write_mask


def _summary(values: list[float]) -> dict[str, Any]:
    """Median, min and max, and the windows themselves (for ratios of paired windows)."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "windows": list(values)}  # fmt: skip


def model_rate(segmenter: Segmenter, slices: int, repeats: int) -> dict[str, Any]:
    """Slices/s of the model alone on device-resident slabs of the Segmenter's batch size."""
    import torch

    cfg = segmenter.cfg
    batch = torch.randn(segmenter.batch_size, cfg.channels, cfg.size, cfg.size)
    batch = batch.to(segmenter.device)
    steps = max(slices // segmenter.batch_size, 1)
    segmenter.probabilities(batch)  # warm-up
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            out = segmenter.probabilities(batch)
        if segmenter.device.type == "cuda":
            torch.cuda.synchronize()
        rates.append(steps * segmenter.batch_size / (time.perf_counter() - start))
        del out
    return _summary(rates)


def direct_rate(
    segmenter: Segmenter,
    studies: list[str],
    out: Path,
    repeats: int,
    overlap: bool = True,
    thumbnails: bool = False,
    in_flight: int = 4,
) -> dict:
    """Studies/s and slices/s of read → segment → statistics → write in one process. With
    ``overlap`` ``in_flight`` threads each take a study through the whole path, sharing the
    model under a lock (as a replica does): one study's reading, statistics and writing run
    while another's model passes run (the decoders, zlib and torch release the GIL).
    ``thumbnails`` also writes each study's review thumbnail (as the archive job does)."""
    model_lock = threading.Lock()

    def one(i: int) -> int:
        volume = read_volume(studies[i])
        result = analyse_study(segmenter, volume, qa=False, lock=model_lock)
        write_mask(result.labels, volume, str(out / f"direct-{i}.nii.gz"))
        if thumbnails:
            png = thumbnail_png(volume.array, result.labels, volume.spacing[:2])
            storage.write_bytes(str(out / f"direct-{i}.png"), png)
        return volume.array.shape[2]

    def run() -> int:
        if not overlap:
            return sum(map(one, range(len(studies))))
        with ThreadPoolExecutor(in_flight) as pool:
            return sum(pool.map(one, range(len(studies))))

    run()  # warm-up
    return timed_windows(run, len(studies), repeats)


def serve_rate(url: str, token: str | None, studies: list[str], out: Path, repeats: int,
               concurrency: int = 4) -> dict:  # fmt: skip
    """The same studies through ``POST /v1/segment-uri``, ``concurrency`` requests in flight."""
    import requests

    headers = {"Authorization": f"Bearer {token}"} if token else {}

    def one(i: int) -> int:
        body = {"input": studies[i], "output": str(out / f"serve-{i}.nii.gz")}
        response = requests.post(f"{url}/v1/segment-uri", json=body, headers=headers,
                                 timeout=600)  # fmt: skip
        response.raise_for_status()
        return response.json()["axial_slices"]

    def run() -> int:
        with ThreadPoolExecutor(concurrency) as pool:
            return sum(pool.map(one, range(len(studies))))

    run()
    return timed_windows(run, len(studies), repeats)


def timed_windows(run, studies: int, repeats: int) -> dict[str, Any]:
    """Run ``run`` (returns slices done) ``repeats`` times; median, min and max of studies/s
    and slices/s over the windows."""
    volumes, slices = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        count = run()
        seconds = time.perf_counter() - start
        volumes.append(studies / seconds)
        slices.append(count / seconds)
    return {"volumes_per_s": _summary(volumes), "slices_per_s": _summary(slices)}


def scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="livseg-bench-"))
