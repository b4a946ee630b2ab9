"""Ray Tune sweeps: trials run our TorchTrainer, ASHA stops weak ones, a killed sweep continues."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from job_helpers import private_ray, removed_unless_failed, wait_gone

from livseg.data import read_record
from livseg.train import TrainConfig
from livseg.tune import SweepConfig, parse_dimension, parse_space, register_best, sweep

REPO = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# One worker, 8 steps of 8 slices per epoch: a trial costs ~30 s on 2 cores, mostly start-up.
TRAIN = {"arch": "unet", "epochs": 3, "batch_size": 8, "workers": 1, "steps_per_epoch": 8}
# Seed 0 samples lr 1e-3, 1e-9, 1e-9. An lr of 1e-9 leaves the net untrained: validation liver
# Dice 0 after epoch 1 against ~0.5 for the first trial, so ASHA (grace 1, factor 2, one trial
# at a time) must stop the 1e-9 trials at their first rung. Equal scores would not stop them.
SPACE = "lr=1e-9|1e-3,gamma=2"


@pytest.fixture(scope="module")
def swept(shards, tmp_path_factory, request):
    work = tmp_path_factory.mktemp("sweeps")
    cfg = SweepConfig(
        name="asha", storage=str(work), samples=3, max_concurrent=1, grace_period=1,
        reduction_factor=2, seed=0, space=parse_space(SPACE),
    )  # fmt: skip
    with removed_unless_failed(request, work):  # checkpoints of 3 trials
        yield sweep(TrainConfig(data=shards, **TRAIN), cfg), work


def test_sweep_stops_weak_trials_and_writes_table_and_plot(swept):
    out, _ = swept
    rows = out["rows"]
    assert len(rows) == 3 and all(r["status"] == "ok" for r in rows)
    assert {r["lr"] for r in rows} == {1e-9, 1e-3}
    assert all(r["focal"] == pytest.approx(1 - r["dice"]) for r in rows)
    # ASHA let the first trial (nothing to compare with) run its 3 epochs and stopped both
    # untrained ones at the first rung (below the median of the scores there before them).
    assert sorted((r["lr"], r["epochs"]) for r in rows) == [(1e-9, 1), (1e-9, 1), (1e-3, 3)]
    assert [r["stopped_early"] for r in rows] == [r["lr"] == 1e-9 for r in rows]
    with open(out["csv"]) as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 3 and {t["trial_id"] for t in table} == {r["trial_id"] for r in rows}
    assert {"dice", "focal", "gamma", "lr", "val_tumour_dice", "val_score"} <= set(table[0])
    png = Path(out["png"]).read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 5_000
    best = out["best"]
    assert best["lr"] == 1e-3 and best["val_score"] == max(r["val_score"] for r in rows)
    assert Path(best["checkpoint"], "meta.json").exists()
    # each trial's Train run stored under the sweep, one folder per trial id
    runs = {p.name for p in Path(out["path"], "runs").iterdir()}
    assert runs == {r["trial_id"] for r in rows}


def test_best_trial_is_registered_and_current(swept, tmp_path):
    from livseg import registry

    out, _ = swept
    reg = register_best(out["best"], out["name"], str(tmp_path / "models"), "livseg")
    assert reg["promoted"] and reg["current"] == reg["version"]
    assert registry.current(str(tmp_path / "models"), "livseg")["version"] == reg["version"]
    card = registry.list_versions(str(tmp_path / "models"), "livseg")[0]
    assert card["parent"] == {"sweep": "asha", "trial": out["best"]["trial_id"]}


@pytest.mark.parametrize(
    ("key", "spec", "kind", "values"),
    [
        ("dice", "0.5:1", "uniform", (0.5, 1.0)),
        ("lr", "1e-4:1e-3:log", "loguniform", (1e-4, 1e-3)),
        ("gamma", "1|2", "choice", (1.0, 2.0)),
        ("gamma", [1, 3], "choice", (1.0, 3.0)),
        ("lr", 3e-4, "choice", (3e-4,)),
    ],
)
def test_space_syntax(key, spec, kind, values):
    dim = parse_dimension(key, spec)
    assert (dim.kind, dim.values) == (kind, values)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("focal=0:1", "focal follows dice"),
        ("batch=1|2", "cannot search 'batch'"),
        ("dice=0:2", "within"),
        ("lr=1e-3:1e-4", "low < high"),
        ("lr=0:1e-3:log", "positive"),
        ("dice", "key=spec"),
        ("gamma=two", "low:high"),
    ],
)
def test_bad_space_is_a_clear_error(text, message):
    with pytest.raises(ValueError, match=message):
        parse_space(text)


def test_space_file_then_flag(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("dice: '0.6:0.9'\ngamma: [1, 2]\n")
    space = parse_space("gamma=3", str(path))
    assert space["dice"].values == (0.6, 0.9) and space["gamma"].values == (3.0,)
    assert space["lr"].kind == "loguniform"  # untouched default


def _trial_states(sweep_dir: Path) -> dict[str, str]:
    """Trial id → status from Tune's newest saved experiment state (what a restore reads)."""
    # Newest by the start time in the name: Tune re-uploads older state files at the end too.
    paths = sorted(sweep_dir.glob("experiment_state-*.json"))
    try:
        data = json.loads(paths[-1].read_text()) if paths else {"trial_data": []}
    except (OSError, ValueError):  # being rewritten: ask again
        return {}
    trials = (json.loads(trial_json) for trial_json, _ in data["trial_data"])
    return {trial["trial_id"]: trial["status"] for trial in trials}


def test_killed_sweep_continues_without_rerunning_finished_trials(shards, tmp_path):
    cmd = [
        sys.executable, str(REPO / "jobs" / "tune.py"), "--data", shards, "--arch", "unet",
        "--samples", "2", "--epochs", "2", "--workers", "1", "--max-concurrent", "1",
        "--grace-period", "1", "--reduction-factor", "2", "--space", "lr=1e-3,gamma=2",
        "--set", "steps_per_epoch=4", "--seed", "0", "--storage", str(tmp_path),
        "--name", "resume", "--no-register", "--num-cpus", "2",
    ]  # fmt: skip
    sweep_dir = tmp_path / "resume"
    with private_ray() as (env, marker), open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)  # fmt: skip
        deadline = time.time() + 240
        while "TERMINATED" not in _trial_states(sweep_dir).values():
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.time() < deadline, "no trial finished in time"
            time.sleep(1)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(30)
        before = _trial_states(sweep_dir)
        assert wait_gone(marker, 60) == [], "Ray processes of the killed sweep outlived it"

        second = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                                timeout=300)  # fmt: skip
        assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
        assert "continued sweep resume: 2 trials" in second.stdout
        after = _trial_states(sweep_dir)
        assert len(after) == 2 and set(after.values()) == {"TERMINATED"}
        for trial_id, status in before.items():
            assert trial_id in after
            if status == "TERMINATED":  # finished before the kill: not trained again
                lines = Path(sweep_dir, trial_id, "result.json").read_text().splitlines()
                assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
        with open(sweep_dir / "sweep.csv") as handle:
            assert {r["trial_id"] for r in csv.DictReader(handle)} == set(after)
        assert wait_gone(marker, 30) == []


def test_trial_that_cannot_be_scheduled_is_a_clear_error(shards, tmp_path):
    """Two 1-CPU workers plus the trial's driver do not fit 2 CPUs: refuse, never hang."""
    cfg = SweepConfig(name="too-big", storage=str(tmp_path), samples=1)
    train = TrainConfig(data=shards, **{**TRAIN, "workers": 2, "cpus_per_worker": 1.0})
    with pytest.raises(ValueError, match="a trial needs 2.01 CPUs"):
        sweep(train, cfg)


def test_a_crop_the_shards_cannot_give_is_a_clear_error(shards, tmp_path):
    """Refused before any trial starts, as ``fit`` refuses it."""
    cfg = SweepConfig(name="bad-crop", storage=str(tmp_path), samples=1)
    size = read_record(shards)["config"]["size"]
    with pytest.raises(ValueError, match=f"crop={size}: windows must be smaller"):
        sweep(TrainConfig(data=shards, **{**TRAIN, "crop": size}), cfg)
    assert not (tmp_path / "bad-crop").exists()
