"""Monte-Carlo resampling of cases: how sure each summary number is (mean, median, 95 %)."""

from __future__ import annotations

from typing import Any

import numpy as np

from livseg.errors import UsageError
from livseg.evaluate.lits import summarise


def flatten(value: Any, prefix: str = "") -> dict[str, float]:
    """Nested summary dict → flat ``{"a.b": number}`` (non-numbers dropped)."""
    if isinstance(value, dict):
        flat: dict[str, float] = {}
        for k, v in value.items():
            flat.update(flatten(v, f"{prefix}{k}."))
        return flat
    if isinstance(value, bool | int | float | np.floating | np.integer):
        return {prefix.rstrip("."): float(value)}
    return {}


def monte_carlo(
    rows: list[dict[str, Any]], iterations: int, seed: int = 0
) -> dict[str, np.ndarray]:
    """Resample cases with replacement ``iterations`` times; every summary value's draws.

    Deterministic for a seed. Returns metric name → (iterations,) float64.
    """
    if iterations < 1:
        raise UsageError(f"--mc {iterations}: use at least 1 Monte-Carlo iteration")
    ok = [r for r in rows if r["status"] == "ok"]
    if not ok:
        return {}
    rng = np.random.default_rng(seed)
    draws = [
        flatten(summarise([ok[i] for i in rng.integers(0, len(ok), len(ok))]))
        for _ in range(iterations)
    ]
    keys = list(draws[0])
    return {k: np.array([d.get(k, np.nan) for d in draws], np.float64) for k in keys}


def interval(values: np.ndarray) -> dict[str, float | None]:
    """Mean, median, std and the 95 % percentile interval of Monte-Carlo draws (NaN-aware)."""
    finite = values[np.isfinite(values)]
    if not len(finite):
        return {"mean": None, "median": None, "std": None, "ci95": None}
    lo, hi = np.percentile(finite, [2.5, 97.5])
    return {
        "mean": float(finite.mean()),
        "median": float(np.median(finite)),
        "std": float(finite.std()),
        "ci95": [float(lo), float(hi)],
    }
