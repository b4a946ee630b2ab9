"""What each benchmark run measures at which size: frozen presets (full, quick, gpu, tiny) and
``run_benchmarks``, which runs the chosen stages and assembles the document."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

from livseg.errors import UsageError

STAGES = ("preprocess", "train", "metrics", "inference")


@dataclass(frozen=True)
class BenchScale:
    """Input sizes of one benchmark run (volumes are generated, LiTS-like)."""

    preprocess_cases: int = 16
    preprocess_size: int = 512  # real LiTS volumes are 512² in-plane; smaller under-states work
    train_cases: int = 8
    train_size: int = 128
    train_steps: int = 30
    train_batch: int = 8
    metrics_size: int = 512
    metrics_slices: int = 500
    inference_cases: int = 6
    inference_size: int = 512


SCALES = {
    "full": BenchScale(),
    # ≤ 10 minutes on 2 cores for every stage.
    # Fixed per-run overheads weigh more at these sizes: its ratios understate the full run's.
    "quick": BenchScale(preprocess_cases=4, preprocess_size=192, train_cases=4, train_size=96,
                        train_steps=6, inference_cases=2, inference_size=96),
    # Test inputs: seconds per stage; the figures exist but mean little.
    "tiny": BenchScale(preprocess_cases=3, preprocess_size=64, train_cases=3, train_size=64,
                       train_steps=3, train_batch=4, metrics_size=64, metrics_slices=40,
                       inference_cases=2, inference_size=64),
}  # fmt: skip


def gpu_scale(scale: BenchScale) -> BenchScale:
    """The GPU run's training inputs: 256² slices, batches of 128; 64 generated cases hold
    about 4,500 training slices, so a window is about 35 steps (``steps_per_window`` says)."""
    return replace(scale, train_cases=max(scale.train_cases, 64), train_size=256,
                   train_steps=max(scale.train_steps, 200), train_batch=128)  # fmt: skip


def run_benchmarks(
    stages: tuple[str, ...],
    scale: BenchScale,
    repeats: int,
    gpu: bool,
    data: str | None = None,
    model: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Each chosen stage's figures, in ``STAGES`` order. ``data``: a LiTS folder for the
    preprocess stage; ``model``: a checkpoint for the inference stage (else one is trained)."""
    from livseg.benchmarks.inference import bench_inference, check_model
    from livseg.benchmarks.preprocessing import bench_preprocess
    from livseg.benchmarks.scoring import bench_metrics
    from livseg.benchmarks.training import bench_train

    unknown = set(stages) - set(STAGES)
    if unknown:
        raise UsageError(f"unknown stage(s) {sorted(unknown)}; choose from {', '.join(STAGES)}")
    if repeats < 3:
        raise UsageError(f"--repeats {repeats}: each figure needs at least 3 timed windows")
    if model and "inference" in stages:
        check_model(model)  # a wrong model fails now, not after the other stages
    s = gpu_scale(scale) if gpu else scale
    out: dict[str, dict[str, Any]] = {}
    for stage in (name for name in STAGES if name in stages):
        started = time.perf_counter()
        if stage == "preprocess":
            out[stage] = bench_preprocess(s.preprocess_cases, s.preprocess_size, repeats, data=data)
        elif stage == "train":
            out[stage] = bench_train(s.train_cases, s.train_size, s.train_steps, s.train_batch,
                                     gpu, repeats)  # fmt: skip
        elif stage == "metrics":
            out[stage] = bench_metrics(s.metrics_size, s.metrics_slices, repeats)
        else:
            out[stage] = bench_inference(s.inference_cases, s.inference_size, repeats, gpu, model)
        out[stage]["stage_wall_s"] = round(time.perf_counter() - started, 1)
    return out
