"""Ray Tune sweeps over the loss weights: search space as data, ASHA over ``train.build_trainer``.

Each trial is a Tune function trainable that builds and fits one TorchTrainer (Train V2's way to
tune); ``TuneReportCallback`` forwards every epoch's metrics to Tune, where ASHA stops weak trials
on ``val_score`` (mean validation liver and tumour Dice; liver alone where no case has tumour).

Layout of ``<storage>/<name>/``: Tune's experiment state and one folder per trial id, the trials'
Ray Train runs (checkpoints) in ``runs/<trial id>/<arch>/``, and ``sweep.csv`` + ``sweep.png``.
Running the same name again continues the sweep instead of starting over.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from typing import Any

from livseg.config import to_dict
from livseg.errors import UsageError
from livseg.io import storage
from livseg.train import SCORE_METRIC, TrainConfig, check_crop, check_init
from livseg.tune.progress import trial_lines
from livseg.tune.ray_compat import (
    PG_FILE,
    placement_group_reaper,
    placement_group_recorder,
    quiet_tune_console,
)
from livseg.tune.results import trial_rows, write_table
from livseg.tune.space import DEFAULT_SPACE, Dimension, trial_config

logger = logging.getLogger(__name__)

METRIC = SCORE_METRIC  # mean of liver and tumour Dice (liver alone without tumour)
DRIVER_CPU = 0.01  # a trial only drives its Train run: leave the CPUs to the Train workers


@dataclass(frozen=True)
class SweepConfig:
    """One sweep: where it lives, how many trials, ASHA's rungs, the search space."""

    name: str = "sweep"
    storage: str = "livseg-work/sweeps"
    samples: int = 8
    max_concurrent: int = 0  # 0: as many trials as the cluster fits at once
    grace_period: int = 2  # epochs every trial runs before ASHA may stop it
    reduction_factor: float = 3.0  # ASHA keeps the best 1/reduction_factor at each rung
    seed: int = 0  # seeds the sampling of the search space
    max_failures: int = 1  # restarts of a trial whose driver died (workers: TrainConfig)
    space: dict[str, Dimension] = field(default_factory=lambda: dict(DEFAULT_SPACE))

    def __post_init__(self) -> None:
        if self.samples < 1 or self.max_concurrent < 0 or self.grace_period < 1:
            raise UsageError("samples and grace_period must be at least 1, max_concurrent >= 0")
        if self.reduction_factor <= 1:
            raise UsageError(f"reduction_factor={self.reduction_factor}: must be above 1")


def run_trial(config: dict[str, Any]) -> None:
    """One trial (a Tune function trainable): fit a TorchTrainer with the sampled values."""
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from livseg.train import build_trainer

    cfg = trial_config(config, ray.tune.get_context().get_trial_id())
    record_pg = placement_group_recorder(storage.join(cfg.storage, cfg.name, PG_FILE))
    # Train V2 resumes a run from (storage, name): a restarted trial continues its epochs.
    build_trainer(cfg, callbacks=[TuneReportCallback(), record_pg]).fit()


def _trial_dirname(trial) -> str:
    return trial.trial_id


def check_trial_fits(train: TrainConfig) -> None:
    """Refuse a trial that can never be scheduled (Tune would wait for it forever).

    A trial holds ``DRIVER_CPU`` for its driver besides its Train workers' CPUs (or GPUs).
    """
    import ray

    from livseg.runtime import largest_node_cpus

    res = ray.cluster_resources()
    need = train.workers * train.cpus_per_worker + DRIVER_CPU
    if need > res.get("CPU", 0) + 1e-9:
        raise UsageError(
            f"a trial needs {need:g} CPUs ({train.workers} worker(s) × {train.cpus_per_worker:g} "
            f"+ {DRIVER_CPU:g} for its driver) but the cluster has {res.get('CPU', 0):g}; "
            "lower --cpus-per-worker or --workers"
        )
    node = largest_node_cpus()
    if train.cpus_per_worker > node + 1e-9:
        raise UsageError(
            f"a trial's worker needs {train.cpus_per_worker:g} CPUs but the largest node has "
            f"{node}; lower --cpus-per-worker (a worker never spans nodes)"
        )
    if train.gpu and res.get("GPU", 0) < train.workers:
        raise UsageError(
            f"--gpu with {train.workers} worker(s) per trial but the cluster has "
            f"{res.get('GPU', 0):g} GPU(s); drop --gpu, lower --workers or add GPU nodes"
        )


def _concurrency(train: TrainConfig, cfg: SweepConfig) -> int:
    import ray

    if cfg.max_concurrent:
        return cfg.max_concurrent
    res = ray.cluster_resources()
    if train.gpu:
        return max(1, int(res.get("GPU", 0) // train.workers))
    return max(1, int(res.get("CPU", 0) // (train.workers * train.cpus_per_worker + DRIVER_CPU)))


def _tuner(train: TrainConfig, cfg: SweepConfig, sweep_root: str):
    """A new Tuner, or the saved one when ``sweep_root`` holds a sweep (then True)."""
    from ray import tune
    from ray.tune.schedulers import AsyncHyperBandScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    trainable = tune.with_resources(run_trial, {"CPU": DRIVER_CPU})
    fs, path = storage.filesystem(sweep_root)
    if tune.Tuner.can_restore(path, storage_filesystem=fs):
        logger.info("continuing sweep %s: its saved space, samples and epochs apply", path)
        restored = tune.Tuner.restore(
            path, trainable, resume_unfinished=True, resume_errored=True, storage_filesystem=fs
        )
        return restored, True
    scheduler = AsyncHyperBandScheduler(
        time_attr="epoch", max_t=train.epochs, grace_period=cfg.grace_period,
        reduction_factor=cfg.reduction_factor,
    )  # fmt: skip
    tuner = tune.Tuner(
        trainable,
        param_space={"train": to_dict(train), **{k: d.domain() for k, d in cfg.space.items()}},
        tune_config=tune.TuneConfig(
            metric=METRIC,
            mode="max",
            scheduler=scheduler,
            num_samples=cfg.samples,
            # max_concurrent_trials is ignored next to a generator instance: limit it here.
            search_alg=BasicVariantGenerator(
                max_concurrent=_concurrency(train, cfg), random_state=cfg.seed
            ),
            trial_dirname_creator=_trial_dirname,
        ),  # fmt: skip
        run_config=tune.RunConfig(
            name=cfg.name,
            storage_path=storage.filesystem(cfg.storage)[1],
            storage_filesystem=fs,
            failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
            callbacks=[
                placement_group_reaper(train.storage),
                trial_lines(sorted(cfg.space), METRIC, train.epochs),
            ],
            verbose=0,  # no status tables every 30 s: trial_lines prints each event once
        ),
    )
    return tuner, False


def sweep(train: TrainConfig, cfg: SweepConfig) -> dict[str, Any]:
    """Run (or continue) the sweep; write ``sweep.csv`` and ``sweep.png``; return the rows,
    the best trial and where everything went."""
    from livseg.data import read_record
    from livseg.runtime import init_ray

    if train.epochs < cfg.grace_period:
        raise UsageError(f"--epochs {train.epochs} is below ASHA's grace period {cfg.grace_period}")
    record = read_record(train.data)  # a clear error for missing shards before Ray starts
    check_init(train.init, train.arch, record)
    check_crop(train.crop, train.arch, record)
    cfg = replace(cfg, storage=storage.absolute(cfg.storage))
    sweep_root = storage.join(cfg.storage, cfg.name)
    storage.prepare_output(sweep_root, f"--storage {cfg.storage}")
    train = replace(
        train, data=storage.absolute(train.data), storage=storage.join(sweep_root, "runs")
    )
    init_ray()
    check_trial_fits(train)
    tuner, resumed = _tuner(train, cfg, sweep_root)
    with quiet_tune_console():
        grid = tuner.fit()
    rows = trial_rows(grid, train.epochs, cfg.storage)
    write_table(rows, sweep_root, f"{cfg.name} ({len(rows)} trials, {train.arch})")
    scored = [r for r in rows if not math.isnan(r["val_score"])]
    if not scored:
        raise RuntimeError(f"no trial reported {METRIC}; see the trial errors under {sweep_root}")
    best = max(scored, key=lambda r: r["val_score"])
    return {"name": cfg.name, "path": sweep_root, "rows": rows, "best": best, "resumed": resumed,
            "csv": storage.join(sweep_root, "sweep.csv"),
            "png": storage.join(sweep_root, "sweep.png")}  # fmt: skip
