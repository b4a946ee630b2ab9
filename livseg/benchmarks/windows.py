"""Timed windows and their summaries: every figure is the median of equal windows after a
warm-up, with the min and max beside it.

Ratios: sides that ran interleaved window by window (``interleaved``) pair window i with
window i (``paired_ratio``); sides that ran one after the other get the ratio of medians with
the widest bounds any pair of windows allows (``ratio_bounds``)."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")


def summary(values: Sequence[float]) -> dict[str, float]:
    """{"median", "min", "max"} of ``values`` (≥ 1 finite, positive numbers)."""
    values = [float(v) for v in values]
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        raise RuntimeError(f"a benchmark window gave {values}: not a positive finite figure")
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def paired_ratio(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """Summary of a[i] / b[i] over paired windows (same count on both sides)."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired windows need equal, non-empty counts (got {len(a)}, {len(b)})")
    return summary([x / y for x, y in zip(a, b, strict=True)])


def ratio_bounds(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """median(a) / median(b), min(a) / max(b) and max(a) / min(b): for sides measured one
    after the other, whose windows have no pairing."""
    sa, sb = summary(a), summary(b)
    return {"median": sa["median"] / sb["median"], "min": sa["min"] / sb["max"],
            "max": sa["max"] / sb["min"]}  # fmt: skip


def rates(run: Callable[[], float], repeats: int, warmup: int = 1) -> list[float]:
    """``run`` (returns the units of work it did) ``warmup`` times untimed, then ``repeats``
    timed windows: units per second of each window."""
    if repeats < 1:
        raise ValueError(f"--repeats must be at least 1 (got {repeats})")
    for _ in range(warmup):
        run()
    out = []
    for _ in range(repeats):
        started = time.perf_counter()
        units = run()
        out.append(units / (time.perf_counter() - started))
    return out


def interleaved(
    runs: dict[str, Callable[[], float]], repeats: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Like ``rates`` for several sides at once, alternating them window by window after each
    side's warm-up, the order reversed every round (A B, B A, A B …), so slow drifts of the
    machine and whatever one side leaves behind hit every side alike."""
    for _ in range(warmup):
        for run in runs.values():
            run()
    out: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for round_ in range(repeats):
        for name in names if round_ % 2 == 0 else names[::-1]:
            run = runs[name]
            started = time.perf_counter()
            units = run()
            out[name].append(units / (time.perf_counter() - started))
    return out


def timed_iter(items: Iterable[T], waited: list[float]) -> Iterator[T]:
    """``items`` unchanged; the seconds spent waiting for each next item are appended to
    ``waited`` (a training loop's time blocked on its input)."""
    iterator = iter(items)
    while True:
        started = time.perf_counter()
        try:
            item = next(iterator)
        except StopIteration:
            return
        waited.append(time.perf_counter() - started)
        yield item
