"""Training side by side: the Ray Train worker fed by Ray Data against the best plain PyTorch
input path we could write for the same tensors, the same model, loss, augmentation,
optimizer, batch, precision and ``train_epoch``; DDP with 2 workers against 1 (CPU); and the
model-only ceiling (device-resident tensors) with a profile of where the rest goes.

Every side runs one torch thread (the Ray worker reserves 1 CPU; the plain loop sets one
thread); on a 2-core machine the other core serves each side's input thread (Ray Data's
prefetch in the worker, the plain loop's prefetch thread) alike. On a CPU the same Ray run is
DDP's one-worker side: 2 one-CPU workers against it, same steps per worker.

Ratios between sides that ran one after the other are ``ratio_bounds`` (ratio of medians,
widest bounds), not window pairs.

Every side runs one untimed warm-up window, then ``repeats`` windows of ``steps`` steps. The
Ray side's windows are its epochs after the first (``history.csv``'s ``train_rows_per_s``,
timed around the epoch's loader and steps, validation excluded).
"""

from __future__ import annotations

import csv
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from livseg.benchmarks.windows import ratio_bounds, summary, timed_iter
from livseg.data import PreprocessConfig, load_split_numpy, preprocess, read_record
from livseg.errors import UsageError
from livseg.train import (
    TrainConfig,
    build_loss,
    build_model,
    fit,
    memory_format,
    train_epoch,
    use_bf16,
)  # fmt: skip


def plain_batches(
    images: torch.Tensor, masks: torch.Tensor, batch_size: int, steps: int,
    device: torch.device, seed: int = 0, depth: int = 4,
) -> Iterator[dict]:  # fmt: skip
    """The best plain input path we could write for in-memory shards: a background thread
    gathers random batches ``depth`` ahead (as the Ray worker's ``prefetch_batches=4``); on a
    GPU it gathers into pinned memory and starts each non-blocking host→device copy on a side
    stream, so copies overlap compute. ``images``/``masks``: (N, C, H, W) / (N, H, W) tensors
    in host memory; yields ``steps`` batches {"image": (B, C, H, W), "mask": (B, H, W)}. An
    error in the thread is raised here."""

    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(images), generator=gen)
    cuda = device.type == "cuda"
    stream = torch.cuda.Stream(device) if cuda else None
    ready: queue.Queue = queue.Queue(maxsize=depth)

    def gather(source, idx):
        out = torch.empty((len(idx), *source.shape[1:]), dtype=source.dtype, pin_memory=cuda)
        return torch.index_select(source, 0, idx, out=out)

    def produce() -> None:
        try:
            for i in range(steps):
                idx = order[(i * batch_size + torch.arange(batch_size)) % len(images)]
                x, y, event = gather(images, idx), gather(masks, idx), None
                if cuda:
                    with torch.cuda.stream(stream):
                        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                        event = torch.cuda.Event()
                        event.record(stream)
                ready.put((x, y, event))
            ready.put(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            ready.put(exc)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    while (item := ready.get()) is not None:
        if isinstance(item, BaseException):
            thread.join()
            raise RuntimeError("the plain loop's input thread failed") from item
        x, y, event = item
        if event is not None:
            current = torch.cuda.current_stream(device)
            current.wait_event(event)
            x.record_stream(current)  # allocated on the side stream, used on this one
            y.record_stream(current)
        yield {"image": x, "mask": y}
    thread.join()


def resident_batches(images: torch.Tensor, masks: torch.Tensor, batch_size: int, steps: int,
                     seed: int = 0) -> Iterator[dict]:  # fmt: skip
    """The ceiling's input: ``steps`` random batches indexed from (N, C, H, W) / (N, H, W)
    tensors already on the device."""

    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(images), generator=gen).to(images.device)
    for i in range(steps):
        idx = order[(i * batch_size + torch.arange(batch_size, device=images.device)) % len(images)]
        yield {"image": images[idx], "mask": masks[idx]}


class LocalTrainer:
    """The model, loss and optimizer of one run in this process, as a Ray worker builds them."""

    def __init__(self, cfg: TrainConfig, channels: int, classes: int, device: torch.device):
        self.cfg, self.classes, self.device = cfg, classes, device
        model = build_model(cfg.arch, channels, classes).to(device)
        self.model = model.to(memory_format=memory_format(4))  # as the Ray workers do
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.loss_fn = build_loss(cfg.dice, cfg.focal, cfg.gamma)
        self.gen = torch.Generator(device=device)

    def window(self, batches: Iterator[dict], waited: list[float] | None = None) -> float:
        """Train on ``batches`` (``train_epoch``); rows done, after the device finished. The
        seconds blocked on each next batch are appended to ``waited``."""
        loader = batches if waited is None else timed_iter(batches, waited)
        loss_sum, _, _ = train_epoch(self.model, loader, self.loss_fn, self.opt, self.cfg,
                                     self.gen, self.classes, self.device)  # fmt: skip
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return float(loss_sum[1])


def local_rates(trainer: LocalTrainer, batches: Callable[[int], Iterator[dict]],
                repeats: int) -> tuple[list[float], list[float]]:  # fmt: skip
    """Rows/s of ``repeats`` windows after one warm-up, and each window's share of time
    blocked on its input; ``batches(seed)`` gives one window's batches."""
    trainer.window(batches(-1))
    rates, waits = [], []
    for seed in range(repeats):
        waited: list[float] = []
        started = time.perf_counter()
        rows = trainer.window(batches(seed), waited)
        seconds = time.perf_counter() - started
        rates.append(rows / seconds)
        waits.append(sum(waited) / seconds)
    return rates, waits


def profile_window(trainer: LocalTrainer, batches: Iterator[dict], top: int = 10) -> list[dict]:
    """Where a plain-loop window's operator time goes: the ``top`` operators by self time
    (device time on a GPU, CPU time otherwise), with their share of all operators' self time.
    Time the device idles waiting for input is no operator: ``input_wait_share`` beside it
    measures that."""
    from torch.profiler import ProfilerActivity, profile

    cuda = trainer.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        trainer.window(batches)
    field = "self_device_time_total" if cuda else "self_cpu_time_total"
    events = [e for e in prof.key_averages() if getattr(e, field, 0) > 0]
    total = sum(getattr(e, field) for e in events) or 1.0
    events.sort(key=lambda e: -getattr(e, field))
    return [
        {"op": e.key, "self_ms": getattr(e, field) / 1e3, "share": getattr(e, field) / total}
        for e in events[:top]
    ]


def ray_rates(cfg: TrainConfig) -> list[float]:
    """Rows/s of each epoch after the first (the warm-up) of a Ray Train run of ``cfg``."""
    row = fit(cfg)
    with open(Path(row["run_dir"], "history.csv")) as handle:
        history = list(csv.DictReader(handle))
    if len(history) != cfg.epochs:
        raise RuntimeError(f"the run stopped after {len(history)} of {cfg.epochs} epochs")
    return [float(h["train_rows_per_s"]) for h in history[1:]]


def bench_train(
    cases: int, size: int, steps: int, batch_size: int, gpu: bool, repeats: int,
    arch: str = "unet-resnet34",
) -> dict[str, Any]:  # fmt: skip
    """Ray Train vs the plain loop (rows/s), DDP 2 vs 1 worker (CPU), the model-only ceiling,
    the plain and ceiling windows' share of time blocked on input, and a profile of one plain
    window."""
    import ray

    from livseg.runtime import init_ray
    from livseg.synthetic import write_dataset

    init_ray()
    cpus = int(ray.cluster_resources().get("CPU", 1))
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        write_dataset(tmp / "raw", cases, size=size)
        shards = str(tmp / "shards")
        preprocess(str(tmp / "raw"), shards, PreprocessConfig(size=size))
        arrays = load_split_numpy(shards, "train")
        rows = len(arrays["image"])
        # A Ray epoch also ends with its shard (half the rows per DDP worker on a CPU).
        requested, steps = steps, min(steps, rows // (batch_size * (1 if gpu else 2)))
        if steps < 1:
            raise UsageError(f"{rows} training rows hold no batch of {batch_size}: generate "
                             "more training cases (BenchScale.train_cases)")  # fmt: skip
        cfg = TrainConfig(
            data=shards, arch=arch, epochs=1 + repeats, steps_per_epoch=steps,
            batch_size=batch_size, lr=1e-3, workers=1, gpu=gpu, cpus_per_worker=1,
            storage=str(tmp / "runs"), name="ray",
            patience=10**6, keep=1,
        )  # fmt: skip
        ray_windows = ray_rates(cfg)
        torch.set_num_threads(1)  # as the Ray worker (1 CPU reserved: one thread)
        device = torch.device("cuda" if gpu else "cpu")
        record = read_record(shards)
        images, masks = torch.from_numpy(arrays["image"]), torch.from_numpy(arrays["mask"])
        trainer = LocalTrainer(cfg, record["channels"], len(record["label_map"]), device)
        plain, plain_wait = local_rates(
            trainer, lambda s: plain_batches(images, masks, batch_size, steps, device, s), repeats
        )
        on_device = images.to(device), masks.to(device)
        ceiling, ceiling_wait = local_rates(
            trainer, lambda s: resident_batches(*on_device, batch_size, steps, s), repeats
        )
        profile = profile_window(trainer, plain_batches(images, masks, batch_size, steps, device))
        ddp = _ddp(cfg, ray_windows, tmp) if not gpu else {"skipped": "one GPU"}
    return {
        "arch": arch, "device": "gpu" if gpu else f"cpu, 1 of {cpus} cores per side",
        "slice_size": size,
        "batch_size": batch_size, "steps_requested": requested, "steps_per_window": steps,
        "train_rows": rows, "bf16": use_bf16(cfg, device),
        "ray_train_rows_per_s": summary(ray_windows),
        "plain_loop_rows_per_s": summary(plain),
        "ceiling_rows_per_s": summary(ceiling),
        "plain_input_wait_share": summary([max(w, 1e-9) for w in plain_wait]),
        "ceiling_input_wait_share": summary([max(w, 1e-9) for w in ceiling_wait]),
        "ray_vs_plain": ratio_bounds(ray_windows, plain),
        "ray_vs_plain_target": 0.90 if gpu else 0.85,
        "ray_fraction_of_ceiling": ratio_bounds(ray_windows, ceiling),
        "ray_fraction_of_ceiling_target": 0.90 if gpu else None,
        "profile": profile,
        "ddp": ddp,
    }  # fmt: skip


def _ddp(cfg: TrainConfig, one: list[float], tmp: Path) -> dict[str, Any]:
    """Global rows/s of DDP with 2 one-CPU workers against ``one`` (the 1-worker run's
    windows), same steps per worker."""
    two = ray_rates(TrainConfig(**{**cfg.__dict__, "workers": 2, "name": "ddp",
                                   "storage": str(tmp / "ddp")}))  # fmt: skip
    return {
        "steps_per_worker": cfg.steps_per_epoch,
        "one_worker_rows_per_s": summary(one),
        "two_workers_rows_per_s": summary(two),
        "efficiency": ratio_bounds(two, [2 * r for r in one]),
    }
