"""``jobs/benchmark.py`` as users run it, on tiny inputs: one JSON document (printed and
written) with every stage's figures, each positive and finite, the ratio table and the plot.
Timings are never asserted: the figures mean little at this size, only their presence does."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

from job_helpers import PNG_MAGIC, private_ray

ROOT = Path(__file__).resolve().parents[2]

FIGURES = {  # stage → keys holding {"median", "min", "max"} figures
    "preprocess": ("ray_data_cases_per_s", "serial_loop_cases_per_s", "ray_data_mb_per_s",
                   "serial_loop_mb_per_s", "speedup"),
    "train": ("ray_train_rows_per_s", "plain_loop_rows_per_s", "ceiling_rows_per_s",
              "ray_vs_plain", "ray_fraction_of_ceiling"),
    "metrics": ("score_case_s", "score_case_with_probs_s"),
    "inference": ("model_slices_per_s", "serve_vs_direct", "archive_vs_direct", "overlap_gain"),
}  # fmt: skip


def _figures(value, where=""):
    """Every {"median", "min", "max"} dict below ``value``, with its path."""
    if isinstance(value, dict):
        if {"median", "min", "max"} <= value.keys():
            yield where, value
        for key, item in value.items():
            yield from _figures(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _figures(item, f"{where}[{i}]")


def _numbers(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _numbers(item)
    elif isinstance(value, list):
        for item in value:
            yield from _numbers(item)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield value


def test_benchmark_job_writes_every_figure(tmp_path, trained_unet):
    out = tmp_path / "bench" / "result.json"
    with private_ray() as (env, _marker):
        done = subprocess.run(
            [sys.executable, "jobs/benchmark.py", "--tiny", "--repeats", "3", "--out", str(out),
             "--model", trained_unet],  # inference measures the session's model
            cwd=ROOT, env={**env, "RAY_AUTH_MODE": "disabled"}, capture_output=True, text=True,
            timeout=1500,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    doc = json.loads(out.read_text())
    assert json.loads(done.stdout) == doc  # stdout is exactly the document
    assert {"date", "machine", "versions", "settings", "ratios", "stages"} <= doc.keys()
    assert doc["versions"]["ray"] and doc["machine"]["cpus"] >= 1
    assert doc["settings"]["repeats"] == 3 and doc["settings"]["scale"] == "tiny"
    assert doc["settings"]["model"] == trained_unet
    assert doc["stages"]["inference"]["arch"] == "unet"  # the model given, not one trained
    assert set(doc["stages"]) == set(FIGURES)
    for stage, keys in FIGURES.items():
        for key in keys:
            figure = doc["stages"][stage][key]
            assert 0 < figure["min"] <= figure["median"] <= figure["max"], (stage, key, figure)
    found = dict(_figures(doc["stages"]))
    assert len(found) >= 25, sorted(found)
    for where, figure in found.items():
        values = [figure["min"], figure["median"], figure["max"]]
        assert all(math.isfinite(v) and v > 0 for v in values), (where, figure)
    assert all(math.isfinite(v) for v in _numbers(doc))
    # The parts that are not ratios of windows: memory, 2-node scaling, DDP, the profile.
    pre, train = doc["stages"]["preprocess"], doc["stages"]["train"]
    assert pre["memory"]["decoded_volume_mb"] > 0
    assert pre["memory"]["worker_peak_mb"]["median"] > pre["memory"]["peak_growth_mb"]["median"]
    assert pre["scaling"]["two_workers_cases_per_s"]["median"] > 0
    assert train["ddp"]["two_workers_rows_per_s"]["median"] > 0
    assert train["profile"] and all(0 < p["share"] <= 1 for p in train["profile"])
    assert "convolution" in " ".join(p["op"] for p in train["profile"])
    # Every ratio made the table, with its target where the issue sets one.
    table = {row["name"]: row for row in doc["ratios"]}
    assert len(table) == 9, sorted(table)
    targets = [row["target"] for row in doc["ratios"] if row["target"] is not None]
    assert sorted(targets) == [0.8, 0.8, 0.85, 1.6, 3.0, 10.0]
    for row in doc["ratios"]:
        assert row["met"] is None if row["target"] is None else isinstance(row["met"], bool)
    png = out.with_suffix(".png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 10_000


def test_benchmark_refuses_fewer_than_three_windows(tmp_path):
    done = subprocess.run(
        [sys.executable, "jobs/benchmark.py", "--tiny", "--repeats", "2", "--stage", "metrics",
         "--out", str(tmp_path / "b.json")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and "at least 3 timed windows" in done.stderr
    assert not (tmp_path / "b.json").exists()


def test_benchmark_refuses_a_model_it_cannot_measure(tmp_path, trained_unet):
    """Before any stage runs (preprocess comes first and would outlast the timeout): a folder
    that is no checkpoint, and a 3-D model the model-alone side cannot feed slices."""
    (tmp_path / "empty").mkdir()
    vnet = tmp_path / "vnet"
    shutil.copytree(trained_unet, vnet)
    meta = json.loads((vnet / "meta.json").read_text())
    (vnet / "meta.json").write_text(json.dumps({**meta, "arch": "vnet"}))
    for model, message in ((tmp_path / "empty", "not a livseg checkpoint"), (vnet, "a 3-D model")):
        done = subprocess.run(
            [sys.executable, "jobs/benchmark.py", "--tiny", "--model", str(model),
             "--out", str(tmp_path / "b.json")],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 2 and message in done.stderr, done.stderr[-2000:]
        assert "Ray instance" not in done.stderr  # refused before any stage started Ray
    assert not (tmp_path / "b.json").exists()
