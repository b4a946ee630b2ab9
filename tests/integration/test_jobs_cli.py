"""The job entry points as users run them: subprocesses, exit codes, printed summaries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_bad_arguments_exit_2_with_a_message(tmp_path):
    missing = _run("jobs/preprocess.py", "--input", str(tmp_path / "nope"), "--output", "x")
    assert missing.returncode == 2 and "no such folder" in missing.stderr
    bad_key = _run(
        "jobs/preprocess.py", "--input", str(tmp_path), "--output", "x", "--set", "sise=3"
    )
    assert bad_key.returncode == 2 and "unknown PreprocessConfig key" in bad_key.stderr
    layout = _run("jobs/synth.py", "--out", str(tmp_path), "--cases", "1", "--layout", "zip")
    assert layout.returncode == 2


def test_synth_writes_kaggle_layout(tmp_path):
    done = _run("jobs/synth.py", "--out", str(tmp_path), "--cases", "2", "--size", "64",
                "--layout", "kaggle")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "volume_pt1" / "volume-0.nii").is_file()
    assert (tmp_path / "segmentations" / "segmentation-1.nii").is_file()


def test_main_job_runs_on_embedded_defaults(tmp_path):
    work = tmp_path / "work"
    done = _run("jobs/pipeline.py", "--work", str(work), "--cases", "4", "--size", "64",
                "--set", "volume_size=32,32,32", "--epochs", "1", "--samples", "2",
                "--sweep-epochs", "1", timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "cases ok 4, failed 0" in done.stdout
    assert (work / "shards" / "preprocess.json").is_file()
    assert list((work / "shards" / "slices" / "train").glob("*.parquet"))
    table = (work / "runs" / "pipeline" / "comparison.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in table[1:]] == ["unet", "unet-resnet34", "vnet"]
    for arch in ("unet", "unet-resnet34", "vnet"):
        assert f"\n{arch} " in done.stdout  # the printed comparison table
        assert f"\n{arch}:  case" in done.stdout  # its per-case test Dice
    assert (work / "evaluation" / "report.html").is_file()
    assert "report: " in done.stdout and "chosen loss weights: dice=" in done.stdout
    sweep_rows = (work / "sweeps" / "pipeline" / "sweep.csv").read_text().splitlines()
    assert len(sweep_rows) == 1 + 2
    current = json.loads((work / "models" / "livseg" / "current.json").read_text())
    assert current["version"] == "v0001" and f"current = {current['version']}" in done.stdout
