"""The job entry points as users run them: subprocesses, exit codes, printed summaries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from job_helpers import free_port

from livseg import registry
from livseg.evaluate import certainty_limit

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str, timeout: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", **(env or {})}
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
    # --gpu on a cluster without GPUs (hidden from Ray here): refused once Ray is up, before
    # anything is generated or trained
    no_gpu = _run("jobs/pipeline.py", "--gpu", "--work", str(tmp_path / "w"),
                  env={"CUDA_VISIBLE_DEVICES": ""})  # fmt: skip
    assert no_gpu.returncode == 2 and "--gpu: the Ray cluster has no GPU" in no_gpu.stderr
    assert not (tmp_path / "w").exists()


def test_synth_writes_kaggle_layout(tmp_path):
    done = _run("jobs/synth.py", "--out", str(tmp_path), "--cases", "2", "--size", "64",
                "--layout", "kaggle")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "volume_pt1" / "volume-0.nii").is_file()
    assert (tmp_path / "segmentations" / "segmentation-1.nii").is_file()


def test_main_job_runs_on_embedded_defaults(tmp_path):
    work = tmp_path / "work"
    # 20 steps: about one pass over its 164 training slices; the test checks the stages, not
    # the models (80-step epochs re-read the shard and cost ~2 minutes here).
    done = _run("jobs/pipeline.py", "--work", str(work), "--cases", "4", "--size", "64",
                "--set", "volume_size=32,32,32", "--epochs", "1", "--steps-per-epoch", "20",
                "--volume-epochs", "1", "--volume-steps", "1",
                "--samples", "1", "--sweep-epochs", "1", "--serve-port", str(free_port()),
                timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    out = done.stdout
    assert "cases ok 4, failed 0" in out
    assert (work / "shards" / "preprocess.json").is_file()
    assert list((work / "shards" / "slices" / "train").glob("*.parquet"))
    for arch in ("unet", "unet-resnet34", "vnet"):
        assert f"\n{arch} " in out  # the printed comparison table
        assert f"\n{arch}:  case" in out  # its per-case test Dice
    assert "\nunet-resnet34 (tuned):  case" in out  # the sweep's best is evaluated too
    assert "\ncascade:  case" in out  # the two-stage model too
    assert (work / "shards-roi" / "preprocess.json").is_file()
    assert (work / "evaluation" / "report.html").is_file()
    assert "report: " in out and "chosen loss weights: dice=" in out
    sweep_rows = (work / "sweeps" / "pipeline" / "sweep.csv").read_text().splitlines()
    assert len(sweep_rows) == 1 + 1  # one trial: the sweep's own tests run several
    # Every trained model and the sweep's best are registered with their test metrics; the
    # current one is the best on validation among those scored on the same cases and grid.
    cards = registry.list_versions(str(work / "models"), "livseg")
    assert len(cards) == 5 and all(c["test_metrics"]["split"] == "test" for c in cards)
    assert all(0 <= c["test_metrics"]["liver_dice_mean"] <= 1 for c in cards)
    slices = [c for c in cards if c["validation"]["grid"] == [64, 64]]
    assert len(slices) == 3 and {c["arch"] for c in cards} == {"unet", "unet-resnet34", "vnet"}
    # The cascade's validation was measured on original grids: registered, never compared.
    bundle = [c for c in cards if c["validation"]["grid"] == "original"]
    assert len(bundle) == 1 and bundle[0]["parent"] == {"pipeline": "cascade"}
    version = work / "models" / "livseg" / bundle[0]["version"]
    assert (version / "tumour" / "model.pt").is_file()
    # Its tumour stage started from the liver stage's weights, a third of its slices tumour,
    # half of them mirrored.
    stage2 = json.loads((version / "tumour" / "meta.json").read_text())["train"]
    assert stage2["tumour_share"] == 0.33 and stage2["flip"] == 0.5
    assert "/runs/pipeline/unet-resnet34/checkpoint_" in stage2["init"], stage2["init"]
    # Each 2-D model's lesion rule was chosen on validation before the test split was scored,
    # and registered with it (a 3-D model has none).
    for model in ("unet", "unet-resnet34", "unet-resnet34 (tuned)", "cascade"):
        assert f"\n{model}: lesion rule {{" in out, model
        assert out.index(f"\n{model}: lesion rule {{") < out.index("\nunet:  case"), model
    assert "\nvnet: lesion rule" not in out
    for card in cards:
        meta = json.loads((work / "models" / "livseg" / card["version"] / "meta.json").read_text())
        assert ("lesions_choice" in meta) == (card["arch"] != "vnet"), card
    current = registry.current(str(work / "models"), "livseg")
    assert current["value"] == max(c["value"] for c in slices)
    # Its review limit was calibrated on the validation cases before registering.
    meta = json.loads((work / "models" / "livseg" / current["version"] / "meta.json").read_text())
    certainty = list(meta["review"]["certainty"].values())
    assert meta["review"]["min_certainty"] == certainty_limit(certainty, 0.94)
    assert "review limit: confidence < " in out
    assert f"current model: livseg {current['version']}" in out
    # The hospital's use: the generated archive went through the Serve app (token on).
    assert "through the Serve app at http://127.0.0.1:" in out
    final = out.split("\n== summary ==\n", 1)[1]  # one summary at the end has it all
    assert "nightly archive: segmented 4, skipped as done 0, not selected 1, failed 1" in final
    assert (
        "chosen loss weights: dice=" in final
        and f"current model: livseg {current['version']}" in final
    )
    stages = final.split("minutes per stage: ", 1)[1].split(" (total", 1)[0]
    assert [part.rsplit(" ", 1)[0] for part in stages.split(", ")] == [
        "start and data", "training", "cascade", "sweep", "evaluation", "registering", "night"
    ]  # fmt: skip
    for model in ("unet", "unet-resnet34", "unet-resnet34 (tuned)", "vnet", "cascade"):
        assert f"\n{model} " in final, model  # its row of the test comparison
    night = work / "archive-out"
    assert len(list((night / "masks").glob("*.nii.gz"))) == 4
    assert (night / "summary.html").is_file() and f"night summary: {night}" in out
    assert oct((work / "serve-token").stat().st_mode & 0o777) == "0o600"
    # Tune's status tables stay off the console: one line per trial event instead.
    assert "Trial status" not in out and "Configuration for experiment" not in out
    assert out.count(" started (") == 1 and "Running Dataset" not in out
