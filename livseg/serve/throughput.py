"""Inference throughput side by side: the model alone, the Segmenter called directly, and the
same studies through the Serve app. Same model, studies, batch size, warm-up and repeats
(``livseg.benchmark_serving`` runs them on generated studies).

- ``model``: forward passes of device-resident random slabs (the ceiling; no pre/post work);
- ``direct``: one process reads each study, segments it (preprocessing on the model's device,
  post-processing, statistics) and writes the mask, decoding the next study in a thread while
  the current one runs (the best plain loop);
- ``serve``: ``POST /v1/segment-uri`` for the same studies, ``concurrency`` in flight, so the
  replica decodes one study while the model runs another.

Each figure is the median of ``repeats`` timed windows (min and max beside it).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from livseg.inference import Segmenter, analyse_study
from livseg.io import read_volume, write_mask


def _summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def model_rate(segmenter: Segmenter, slices: int, repeats: int) -> dict[str, float]:
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
    segmenter: Segmenter, studies: list[str], out: Path, repeats: int, prefetch: bool = True
) -> dict:
    """Studies/s and slices/s of read → segment → write in one process; with ``prefetch`` the
    next study is read in a thread while the current one runs (the decoders release the GIL)."""

    def run() -> int:
        slices = 0
        with ThreadPoolExecutor(1) as reader:
            pending = reader.submit(read_volume, studies[0])
            for i in range(len(studies)):
                volume = pending.result()
                if i + 1 < len(studies):
                    pending = reader.submit(read_volume, studies[i + 1])
                    if not prefetch:
                        pending.result()  # wait: no overlap
                result = analyse_study(segmenter, volume, qa=False)
                write_mask(result.labels, volume, str(out / f"direct-{i}.nii.gz"))
                slices += volume.array.shape[2]
        return slices

    run()  # warm-up
    return _windows(run, len(studies), repeats)


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
    return _windows(run, len(studies), repeats)


def _windows(run, studies: int, repeats: int) -> dict[str, Any]:
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
