"""Ray Tune sweeps over the loss weights: search space as data, ASHA over ``runs.build_trainer``.

Each trial is a Tune function trainable that builds and fits one TorchTrainer (Train V2's way to
tune); ``TuneReportCallback`` forwards every epoch's metrics to Tune, where ASHA stops weak trials
on ``val_score`` (mean validation liver and tumour Dice; liver alone where no case has tumour).

Layout of ``<storage>/<name>/``: Tune's experiment state and one folder per trial id, the trials'
Ray Train runs (checkpoints) in ``runs/<trial id>/<arch>/``, and ``sweep.csv`` + ``sweep.png``.
Running the same name again continues the sweep instead of starting over.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from livseg import storage
from livseg.config import from_dict, to_dict
from livseg.train import TrainConfig

logger = logging.getLogger(__name__)

METRIC = "val_score"  # mean of liver and tumour Dice (liver alone without tumour): train._score
DRIVER_CPU = 0.01  # a trial only drives its Train run: leave the CPUs to the Train workers
SEARCHABLE = ("dice", "gamma", "lr", "weight_decay")  # focal follows dice: focal = 1 - dice
KINDS = ("uniform", "loguniform", "choice")
COLUMNS = (
    "trial_id", "dice", "focal", "gamma", "lr", "val_tumour_dice", "val_liver_dice",
    "val_score", "best_epoch", "epochs", "stopped_early", "status", "checkpoint",
)  # fmt: skip


@dataclass(frozen=True)
class Dimension:
    """One searched TrainConfig key: ``uniform``/``loguniform`` over (low, high), or a choice."""

    kind: str
    values: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"search kind {self.kind!r}: use one of {KINDS}")
        if self.kind != "choice" and (len(self.values) != 2 or self.values[0] >= self.values[1]):
            raise ValueError(f"{self.kind} range {self.values}: write low:high with low < high")
        if self.kind == "loguniform" and self.values[0] <= 0:
            raise ValueError(f"loguniform range {self.values}: low must be positive")
        if not self.values:
            raise ValueError("a choice needs at least one value")

    def domain(self):
        """The Ray Tune sampling domain."""
        from ray import tune

        if self.kind == "choice":
            return tune.choice(list(self.values))
        return getattr(tune, self.kind)(*self.values)


# The study fixed dice 0.8 / focal 0.2, gamma 2, Adam 1e-4; the sweep searches around them.
DEFAULT_SPACE = {
    "dice": Dimension("uniform", (0.0, 1.0)),
    "gamma": Dimension("choice", (1.0, 2.0, 3.0)),
    "lr": Dimension("loguniform", (3e-5, 3e-4)),
}


def parse_dimension(key: str, spec: Any) -> Dimension:
    """``"0.5:1"`` uniform, ``"1e-4:1e-3:log"`` log-uniform, ``"1|2|3"`` or a list a choice,
    a single number fixed; checked against what ``key`` allows."""
    if key == "focal":
        raise ValueError("focal follows dice (focal = 1 - dice): search dice instead")
    if key not in SEARCHABLE:
        raise ValueError(f"cannot search {key!r}; searchable keys: {', '.join(SEARCHABLE)}")
    kind, items = "choice", spec if isinstance(spec, (list, tuple)) else [spec]
    if isinstance(spec, str) and "|" in spec:
        items = spec.split("|")
    elif isinstance(spec, str) and ":" in spec:
        items = spec.split(":")
        kind = "uniform"
        if len(items) == 3 and items[2] == "log":
            kind, items = "loguniform", items[:2]
    usage = f"search space {key}={spec!r}: write low:high, low:high:log, a|b|c or one number"
    try:
        values = tuple(float(v) for v in items)
    except (TypeError, ValueError) as exc:
        raise ValueError(usage) from exc
    if not values or (kind != "choice" and len(values) != 2):
        raise ValueError(usage)
    dim = Dimension(kind, values)
    bounds = {"dice": (0.0, 1.0), "gamma": (0.0, math.inf), "lr": (1e-12, math.inf)}
    low, high = bounds.get(key, (0.0, math.inf))
    if not all(low <= v <= high for v in dim.values):
        raise ValueError(f"search space {key}={spec!r}: values must lie within [{low}, {high}]")
    return dim


def parse_space(text: str = "", path: str | None = None) -> dict[str, Dimension]:
    """The default space updated by a YAML/JSON file (``key: spec``) and then by ``--space``
    text (``dice=0.5:1,gamma=1|2,lr=1e-4:1e-3:log``); each names whole dimensions."""
    space = dict(DEFAULT_SPACE)
    if path:
        with open(path, encoding="utf-8") as handle:
            loaded = yaml.safe_load(handle) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping such as 'dice: 0.5:1'")
        space.update({str(k): parse_dimension(str(k), v) for k, v in loaded.items()})
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, spec = part.partition("=")
        if not sep:
            raise ValueError(f"--space {part!r}: write key=spec, e.g. dice=0.5:1")
        space[key.strip()] = parse_dimension(key.strip(), spec.strip())
    return space


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
            raise ValueError("samples and grace_period must be at least 1, max_concurrent >= 0")
        if self.reduction_factor <= 1:
            raise ValueError(f"reduction_factor={self.reduction_factor}: must be above 1")


def run_trial(config: dict[str, Any]) -> None:
    """One trial (a Tune function trainable): fit a TorchTrainer with the sampled values."""
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from livseg.runs import build_trainer

    cfg = trial_config(config, ray.tune.get_context().get_trial_id())
    record_pg = _placement_group_recorder(storage.join(cfg.storage, cfg.name, PG_FILE))
    # Train V2 resumes a run from (storage, name): a restarted trial continues its epochs.
    build_trainer(cfg, callbacks=[TuneReportCallback(), record_pg]).fit()


# Why the next two exist: when Tune stops a trial (ASHA), the trial's Train controller dies with
# it and the workers' placement group outlives both until the job ends. Ray's own cleaner finds
# the dead controller through the State API, which needs the dashboard and fails outright with
# several Ray instances on one host; a leaked group holds CPUs and stalls the next trials.
PG_FILE = "placement_group"


def _placement_group_recorder(path: str):
    """A Train callback that writes its workers' placement group id to ``path``."""
    from ray.train.v2._internal.execution.callback import WorkerGroupCallback

    class RecordPlacementGroup(WorkerGroupCallback):
        def after_worker_group_start(self, worker_group) -> None:
            state = worker_group.get_worker_group_state()
            storage.write_text(path, state.placement_group_handle.placement_group.id.hex())

    return RecordPlacementGroup()


def _remove_placement_group(runs_root: str, trial_id: str) -> None:
    from ray._raylet import PlacementGroupID
    from ray.util.placement_group import PlacementGroup, placement_group_table
    from ray.util.placement_group import remove_placement_group as remove

    path = storage.join(runs_root, trial_id, PG_FILE)
    if not storage.exists(path):
        return
    group = PlacementGroup(PlacementGroupID(bytes.fromhex(storage.read_text(path).strip())))
    if placement_group_table(group).get("state", "REMOVED") != "REMOVED":
        remove(group)


def _reaper(runs_root: str):
    """A Tune callback removing each finished trial's Train placement group."""
    from ray.tune import Callback

    class RemovePlacementGroups(Callback):
        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            _remove_placement_group(runs_root, trial.trial_id)

        on_trial_error = on_trial_complete

    return RemovePlacementGroups()


def trial_config(config: dict[str, Any], trial_id: str) -> TrainConfig:
    """The TrainConfig of one trial: base settings, sampled values, focal = 1 - dice."""
    values = {k: v for k, v in config.items() if k != "train"}
    if "dice" in values:
        values["focal"] = round(1.0 - values["dice"], 12)
    return from_dict(TrainConfig, {**config["train"], **values, "name": trial_id})


def _trial_dirname(trial) -> str:
    return trial.trial_id


def _absolute(uri: str) -> str:
    # Tune runs each trial in its own working directory: relative paths would move.
    return uri if storage.is_s3(uri) else str(Path(uri).expanduser().resolve())


def check_trial_fits(train: TrainConfig) -> None:
    """Refuse a trial that can never be scheduled (Tune would wait for it forever).

    A trial holds ``DRIVER_CPU`` for its driver besides its Train workers' CPUs (or GPUs).
    """
    import ray

    res = ray.cluster_resources()
    need = train.workers * train.cpus_per_worker + DRIVER_CPU
    if need > res.get("CPU", 0) + 1e-9:
        raise ValueError(
            f"a trial needs {need:g} CPUs ({train.workers} worker(s) × {train.cpus_per_worker:g} "
            f"+ {DRIVER_CPU:g} for its driver) but the cluster has {res.get('CPU', 0):g}; "
            "lower --cpus-per-worker or --workers"
        )
    if train.gpu and res.get("GPU", 0) < train.workers:
        raise ValueError(
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
            callbacks=[_reaper(train.storage)],
        ),
    )
    return tuner, False


def sweep(train: TrainConfig, cfg: SweepConfig) -> dict[str, Any]:
    """Run (or continue) the sweep; write ``sweep.csv`` and ``sweep.png``; return the rows,
    the best trial and where everything went."""
    from livseg.runtime import init_ray
    from livseg.shards import read_record

    if train.epochs < cfg.grace_period:
        raise ValueError(f"--epochs {train.epochs} is below ASHA's grace period {cfg.grace_period}")
    read_record(train.data)  # a clear error for missing shards before Ray starts
    cfg = replace(cfg, storage=_absolute(cfg.storage))
    sweep_root = storage.join(cfg.storage, cfg.name)
    storage.prepare_output(sweep_root, f"--storage {cfg.storage}")
    train = replace(train, data=_absolute(train.data), storage=storage.join(sweep_root, "runs"))
    init_ray()
    check_trial_fits(train)
    tuner, resumed = _tuner(train, cfg, sweep_root)
    grid = tuner.fit()
    rows = summarise(grid, train.epochs, cfg.storage)
    write_table(rows, sweep_root, f"{cfg.name} ({len(rows)} trials, {train.arch})")
    scored = [r for r in rows if not math.isnan(r["val_score"])]
    if not scored:
        raise RuntimeError(f"no trial reported {METRIC}; see the trial errors under {sweep_root}")
    best = max(scored, key=lambda r: r["val_score"])
    return {"name": cfg.name, "path": sweep_root, "rows": rows, "best": best, "resumed": resumed,
            "csv": storage.join(sweep_root, "sweep.csv"),
            "png": storage.join(sweep_root, "sweep.png")}  # fmt: skip


def summarise(grid, max_epochs: int, storage_root: str) -> list[dict[str, Any]]:
    """One row per trial: its values, best validation epoch, epochs run, early stop, checkpoint."""
    from livseg.runs import checkpoint_uri

    rows = []
    for result in grid:
        trial_id = storage.basename(result.path)
        cfg = trial_config(result.config, trial_id)
        frame = result.metrics_dataframe
        history = [] if frame is None else frame.to_dict("records")
        history = [h for h in history if METRIC in h and not _nan(h[METRIC])]
        # Ties go to the later epoch, as Train's checkpoint retention keeps the later one.
        best = max(history, key=lambda h: (h[METRIC], h["epoch"]), default={})
        epochs = max((int(h["epoch"]) for h in history), default=0)
        path = best.get("checkpoint_path")
        rows.append({
            "trial_id": trial_id, "dice": cfg.dice, "focal": cfg.focal, "gamma": cfg.gamma,
            "lr": cfg.lr, "val_tumour_dice": best.get("val_tumour_dice", math.nan),
            "val_liver_dice": best.get("val_liver_dice", math.nan),
            "val_score": best.get(METRIC, math.nan), "best_epoch": best.get("epoch", 0),
            "epochs": epochs,
            # Tune marks a trial its scheduler stopped "done" too: tell by the epochs it ran.
            "stopped_early": result.error is None and 0 < epochs < max_epochs,
            "status": "error" if result.error else "ok",
            "checkpoint": checkpoint_uri(path, storage_root) if isinstance(path, str) else "",
        })  # fmt: skip
    return sorted(rows, key=lambda r: r["trial_id"])


def _nan(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def write_table(rows: list[dict[str, Any]], folder: str, title: str) -> None:
    """``sweep.csv`` (one row per trial) and ``sweep.png`` into ``folder``."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    storage.write_text(storage.join(folder, "sweep.csv"), out.getvalue())
    storage.write_bytes(storage.join(folder, "sweep.png"), sweep_png(rows, title))


def sweep_png(rows: list[dict[str, Any]], title: str) -> bytes:
    """Validation tumour Dice (of each trial's best epoch) against the Dice weight, coloured by
    focal gamma; hollow: stopped early; star: best trial. Where no validation case has tumour
    the validation score (liver Dice then) is plotted instead. PNG bytes."""
    from livseg.report import figure_png, pyplot

    key = "val_tumour_dice" if any(not _nan(r["val_tumour_dice"]) for r in rows) else METRIC
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    gammas = sorted({r["gamma"] for r in rows})
    for colour, gamma in zip(plt.cm.tab10.colors, gammas, strict=False):
        for early in (False, True):
            sel = [r for r in rows if r["gamma"] == gamma and r["stopped_early"] == early]
            label = f"γ = {gamma:g}" + (" (stopped early)" if early else "")
            face = "none" if early else colour
            if sel:
                x, y = [r["dice"] for r in sel], [r[key] for r in sel]
                ax.scatter(x, y, s=60, facecolors=face, edgecolors=colour, label=label)
    scored = [r for r in rows if not _nan(r[METRIC])]
    if scored:
        best = max(scored, key=lambda r: r[METRIC])
        ax.scatter(best["dice"], best[key], marker="*", s=250, c="gold", edgecolors="black",
                   zorder=3, label="best (by validation score)")  # fmt: skip
    ax.set_xlim(-0.05, 1.05)
    ax.set_xlabel("Dice weight (focal = 1 − Dice)")
    ax.set_ylabel(
        "validation tumour Dice" if key != METRIC else "validation score (no tumour in val)"
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    return figure_png(fig)


def register_best(best: dict[str, Any], sweep_name: str, root: str, model_name: str) -> dict:
    """Register the best trial's checkpoint; promoted when it beats ``current`` on val_score."""
    from livseg.registry import register

    parent = {"sweep": sweep_name, "trial": best["trial_id"]}
    return register(root, model_name, best["checkpoint"], metric=METRIC, parent=parent)


def format_best(best: dict[str, Any]) -> str:
    """The best trial in one line."""
    return (
        f"best trial {best['trial_id']}: dice={best['dice']:.3f} focal={best['focal']:.3f} "
        f"gamma={best['gamma']:g} lr={best['lr']:.2e}; val tumour Dice "
        f"{best['val_tumour_dice']:.3f}, liver Dice {best['val_liver_dice']:.3f} "
        f"(epoch {best['best_epoch']}); checkpoint {best['checkpoint']}"
    )
