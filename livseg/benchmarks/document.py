"""The benchmark's one JSON document: every stage's figures, the machine, the versions and
the date, a table of the ratios against their targets, and a plot of that table (PNG)."""

from __future__ import annotations

import json
import math
import os
import platform
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

from livseg.figures import figure_png, pyplot
from livseg.io import storage

# (stage, path to a {"median", "min", "max"} figure, its target's key beside it, better, label)
RATIOS = (
    ("preprocess", ("speedup",), "speedup_target", "higher", "preprocess: Ray Data / serial loop"),
    ("preprocess", ("memory", "peak_vs_volume"), "peak_vs_volume_target_max", "lower",
     "preprocess: worker peak memory / decoded volume"),
    ("preprocess", ("scaling", "efficiency"), None, "higher",
     "preprocess: 2-node efficiency (2 workers / 2×1)"),
    ("train", ("ray_vs_plain",), "ray_vs_plain_target", "higher", "train: Ray Train / plain loop"),
    ("train", ("ray_fraction_of_ceiling",), "ray_fraction_of_ceiling_target", "higher",
     "train: Ray Train / model-only ceiling"),
    ("train", ("ddp", "efficiency"), None, "higher", "train: DDP efficiency (2 workers / 2×1)"),
    ("inference", ("serve_vs_direct",), "serve_vs_direct_target", "higher",
     "inference: Serve / direct Segmenter"),
    ("inference", ("archive_vs_direct",), "archive_vs_direct_target", "higher",
     "inference: archive job / direct Segmenter"),
    ("metrics", ("score_case_s",), "score_case_s_target_max", "lower",
     "metrics: seconds per case (full run: 512²×500)"),
)  # fmt: skip


def machine() -> dict[str, Any]:
    """The CPU model and count, memory and GPU of this process's machine."""
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next((ln.split(":", 1)[1].strip() for ln in handle if "model name" in ln), cpu)
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    gpu = None
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"platform": platform.platform(), "cpu": cpu, "cpus": usable,
            "memory_gb": round(memory / 2**30, 1), "gpu": gpu}  # fmt: skip


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("livseg", "ray", "torch", "segmentation-models-pytorch", "numpy", "pyarrow"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _lookup(figures: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(figures, dict) or key not in figures:
            return None
        figures = figures[key]
    return figures


def ratio_table(stages: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per measured ratio: median, min, max, target, which way is better, met?"""
    rows = []
    for stage, path, target_key, better, label in RATIOS:
        figure = _lookup(stages.get(stage, {}), path)
        if not isinstance(figure, dict) or "median" not in figure:
            continue  # the stage did not run, or this part was skipped (its reason is kept)
        parent = _lookup(stages[stage], path[:-1]) if len(path) > 1 else stages[stage]
        target = parent.get(target_key) if target_key else None
        met = None
        if target is not None:
            met = figure["median"] >= target if better == "higher" else figure["median"] <= target
        rows.append({
            "name": label, "median": round(figure["median"], 3), "min": round(figure["min"], 3),
            "max": round(figure["max"], 3), "target": target, "better": better, "met": met,
            "unit": "s" if path[-1].endswith("_s") else "ratio",
        })  # fmt: skip
    return rows


def document(stages: dict[str, dict[str, Any]], settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions(),
        "settings": settings,
        "ratios": ratio_table(stages),
        "stages": stages,
    }


def check_finite(value: Any, where: str = "") -> None:
    """Every number in ``value`` is finite (a NaN or inf figure is a broken measurement)."""
    if isinstance(value, dict):
        for key, item in value.items():
            check_finite(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_finite(item, f"{where}[{i}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise RuntimeError(f"benchmark figure {where.lstrip('.')} is {value}")


def ratio_plot(rows: list[dict[str, Any]], title: str) -> bytes:
    """Horizontal bars (median, min–max whiskers) with each target as a red tick: the ratios
    in one panel, figures in seconds in another; PNG."""
    plt = pyplot()
    panels = [[r for r in rows if r["unit"] == unit] for unit in ("ratio", "s")]
    panels = [p for p in panels if p] or [[]]
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(9, 0.5 * len(rows) + 1.2 * len(panels) + 0.6), squeeze=False,
        gridspec_kw={"height_ratios": [max(len(p), 1) for p in panels]},
    )  # fmt: skip
    for ax, panel in zip(axes[:, 0], panels, strict=True):
        _bars(ax, panel)
    axes[0, 0].set_title(title, fontsize=9)
    axes[-1, 0].set_xlabel("median of the windows (whiskers: min–max); red: target")
    return figure_png(fig)


def _bars(ax, rows: list[dict[str, Any]]) -> None:
    colours = {True: "tab:green", False: "tab:orange", None: "tab:blue"}
    for i, row in enumerate(reversed(rows)):
        err = [[row["median"] - row["min"]], [row["max"] - row["median"]]]
        ax.barh(i, row["median"], xerr=err, color=colours[row["met"]], capsize=3)
        if row["target"] is not None:
            ax.plot([row["target"]] * 2, [i - 0.4, i + 0.4], color="red", lw=2)
        arrow = "≥" if row["better"] == "higher" else "≤"
        target = f" (target {arrow} {row['target']:g})" if row["target"] is not None else ""
        unit = " s" if row["unit"] == "s" else ""
        ax.text(row["max"], i, f"  {row['median']:.2f}{unit}{target}", va="center", fontsize=8)
    ax.set_yticks(range(len(rows)), [r["name"] for r in reversed(rows)], fontsize=8)
    top = max([r["max"] for r in rows] + [r["target"] or 0 for r in rows] + [1])
    ax.set_xlim(0, top * 1.4)


def write_document(doc: dict[str, Any], out: str) -> tuple[str, str]:
    """``out`` (JSON) and the ratio plot beside it (same name, ``.png``); both atomic."""
    storage.write_text(out, json.dumps(doc, indent=2))
    png = (out[:-5] if out.endswith(".json") else out) + ".png"
    host = doc["machine"]
    title = f"livseg benchmark, {doc['date'][:10]}, {host['cpu']} ({host['cpus']} CPUs)"
    if doc["machine"]["gpu"]:
        title += f", {doc['machine']['gpu']}"
    storage.write_bytes(png, ratio_plot(doc["ratios"], title))
    return out, png
