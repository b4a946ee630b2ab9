"""The driver side of training: ``fit`` runs one TorchTrainer, ``fit_all`` compares architectures.

A run lives in ``<storage>/<name>/<arch>/`` (Ray's checkpoints plus ``history.csv`` and
``curves.png``); ``<storage>/<name>/comparison.csv`` answers the study's question, one row per
architecture. Running the same ``name`` again resumes from the latest checkpoint.
"""

from __future__ import annotations

import csv
import io
import time
from typing import TYPE_CHECKING, Any

from livseg.config import to_dict
from livseg.data import read_record, read_split
from livseg.errors import UsageError
from livseg.io import storage
from livseg.runtime import init_ray, quick_train_polling, torch_threads
from livseg.train.augment import check_crop
from livseg.train.checkpoint import check_init, load_train_state
from livseg.train.config import TrainConfig
from livseg.train.history import write_history
from livseg.train.loop import NonFiniteLossError, count_parameters, train_loop
from livseg.train.models import build_model, is_volumetric
from livseg.train.sampling import oversample_tumour

if TYPE_CHECKING:
    from ray.train.torch import TorchTrainer

COMPARISON_COLUMNS = (
    "arch", "parameters", "epochs", "best_epoch", "val_liver_dice", "val_tumour_dice",
    "val_iou", "val_f1", "val_loss", "minutes", "checkpoint",
)  # fmt: skip


def _dataset_key(cfg: TrainConfig) -> tuple:
    """What a run's datasets depend on: runs with equal keys can share one materialised copy."""
    kind = "volumes" if is_volumetric(cfg.arch) else "slices"
    return cfg.data, kind, cfg.tumour_share if kind == "slices" else 0.0, cfg.seed


def _datasets(cfg: TrainConfig) -> dict[str, Any]:
    from ray.data import RandomSeedConfig

    _, kind, share, _ = _dataset_key(cfg)
    oversample = share > 0
    train = read_split(cfg.data, "train", kind)
    # Every execution below (and the datasets made from ``train``, which share its context)
    # keeps the order of blocks: with the seeded block order, one seed gives one data order.
    # Without it the tumour rows' filter returned its blocks in the order tasks finished.
    train.context.execution_options.preserve_order = True
    train = (
        train.select_columns(["image", "mask", "has_tumour"] if oversample else ["image", "mask"])
        # Small blocks, shuffled each epoch, plus each worker's local buffer mix cases well.
        .repartition(target_num_rows_per_block=32)
        .materialize()  # fixed-shape tensors held once: every epoch reads memory, not Parquet
    )
    if oversample:
        # ``has_tumour`` stays (the loop reads image and mask only). Nothing that runs as a
        # task may follow the union: inside the run it needs a CPU, and a worker that reserved
        # every CPU waits for it forever (a projection here hung one worker on 2 of 2 CPUs).
        train, _ = oversample_tumour(train, cfg.tumour_share)
    # A new block order each epoch (each execution of the dataset), the same for the same seed.
    # A resumed or restarted run's split starts again from the first epoch's order, so it
    # trains on another order than an uninterrupted run did (the README says so).
    train = train.randomize_block_order(seed=RandomSeedConfig(seed=cfg.seed))
    val = read_split(cfg.data, "val", kind).select_columns(["image", "mask", "case_id"])
    # The validation loss is a per-batch Dice: which rows share a batch must not depend on
    # which read task finished first.
    val.context.execution_options.preserve_order = True
    return {"train": train, "val": val.materialize()}


def shared_datasets(cfg: TrainConfig, shared: dict) -> dict[str, Any]:
    """``cfg``'s datasets from ``shared`` if a run with the same ``_dataset_key`` made them;
    otherwise made here, after dropping what ``shared`` held (one copy at most)."""
    key = _dataset_key(cfg)
    if key not in shared:
        shared.clear()
        shared[key] = _datasets(cfg)
    return shared[key]


def _ordered_ingest() -> Any:
    """Ray Train's ingest options with ``preserve_order``: the train split then hands its
    (seeded) block order to the workers the same way every run. Without it the split follows
    locality hints and the order its inputs arrive in, and two DDP runs with one seed trained
    differently (validation liver Dice 0.10, 0.58, 0.54 after 8 steps). Dropping the locality
    hints means that on several nodes a worker may read blocks held on another node."""
    from ray.train import DataConfig

    options = DataConfig.default_ingest_options()
    options.preserve_order = True
    return options


def _check_cluster(cfg: TrainConfig) -> None:
    import ray

    if cfg.gpu:
        gpus = ray.cluster_resources().get("GPU", 0)
        if gpus < cfg.workers:
            raise UsageError(
                f"--gpu with {cfg.workers} worker(s) but the cluster has {gpus:g} GPU(s); "
                "drop --gpu, lower --workers or add GPU nodes"
            )


def checkpoint_uri(path: str, storage_root: str) -> str:
    """A checkpoint's URI from Ray's filesystem path (``bucket/key`` under an ``s3://`` root)."""
    return f"s3://{path}" if storage.is_s3(storage_root) else path


def build_trainer(
    cfg: TrainConfig, callbacks: list | None = None, shared: dict | None = None
) -> TorchTrainer:
    """The TorchTrainer of one run, storing under ``<storage>/<name>/<arch>/``.

    ``callbacks`` go to the trainer's RunConfig (a sweep passes Tune's ``TuneReportCallback``);
    ``shared``: see ``fit``. Ray must be initialised; the storage folder must exist.
    """
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    record = read_record(cfg.data)
    _check_cluster(cfg)
    quick_train_polling()
    fs, path = storage.filesystem(storage.join(cfg.storage, cfg.name))
    resources = {"CPU": cfg.cpus_per_worker, **({"GPU": 1} if cfg.gpu else {})}
    return TorchTrainer(
        train_loop,
        # "started": a time limit counts from here, the same for restarts after a worker fault.
        # "threads": torch's intra-op threads per CPU worker, resolved here (torch_threads).
        train_loop_config={
            "train": to_dict(cfg),
            "record": record,
            "started": time.time(),
            "threads": torch_threads(cfg.cpus_per_worker),
        },
        scaling_config=ScalingConfig(
            num_workers=cfg.workers, use_gpu=cfg.gpu, resources_per_worker=resources
        ),
        run_config=RunConfig(
            name=cfg.arch,
            storage_path=path,
            storage_filesystem=fs,
            failure_config=FailureConfig(max_failures=cfg.max_failures),
            checkpoint_config=CheckpointConfig(
                num_to_keep=cfg.keep,
                checkpoint_score_attribute="val_score",
                checkpoint_score_order="max",
            ),
            callbacks=callbacks,
        ),
        datasets=_datasets(cfg) if shared is None else shared_datasets(cfg, shared),
        # Validation is not split: an equal split drops rows; ranks share it batch by batch.
        dataset_config=DataConfig(
            datasets_to_split=["train"], execution_options={"train": _ordered_ingest()}
        ),
    )


def fit(cfg: TrainConfig, shared: dict | None = None) -> dict[str, Any]:
    """Train one architecture; return its summary row (best validation metrics, checkpoint).

    Runs given the same ``shared`` dict that read the same shards the same way use one
    materialised copy (reading and decoding them takes seconds per run); the dict holds one
    copy at most, so a run that reads something else frees it first.
    """
    record = read_record(cfg.data)
    in_channels = 1 if is_volumetric(cfg.arch) else record["channels"]
    # Built here first so that a wrong arch or weights file is a usage error on the driver, not
    # a worker fault that Ray Train retries (the hub download of "imagenet" is left to workers).
    weights = "none" if cfg.encoder_weights == "imagenet" else cfg.encoder_weights
    model = build_model(cfg.arch, in_channels, len(record["label_map"]), weights)
    check_init(cfg.init, cfg.arch, record)
    check_crop(cfg.crop, cfg.arch, record)
    params = count_parameters(model)
    run_root = storage.join(cfg.storage, cfg.name)
    storage.prepare_output(run_root, f"--storage {cfg.storage}")
    init_ray()
    trainer = build_trainer(cfg, shared=shared)
    started = time.time()
    result = _fit_trainer(trainer)
    best, best_metrics = max(result.best_checkpoints, key=lambda item: item[1]["val_score"])
    run_dir = storage.join(run_root, cfg.arch)
    with result.checkpoint.as_directory() as folder:
        history = load_train_state(folder)["state"]["history"]
    write_history(history, run_dir, f"{cfg.arch} ({cfg.name})")
    return {
        "arch": cfg.arch,
        "parameters": params,
        "epochs": len(history),
        "best_epoch": best_metrics["epoch"],
        "val_liver_dice": best_metrics["val_liver_dice"],
        "val_tumour_dice": best_metrics["val_tumour_dice"],
        "val_iou": best_metrics["val_iou"],
        "val_f1": best_metrics["val_f1"],
        "val_loss": best_metrics["val_loss"],
        "minutes": round((time.time() - started) / 60, 2),
        "checkpoint": checkpoint_uri(best.path, cfg.storage),
        "resumed_from_epoch": result.metrics.get("resumed_from_epoch", 0),
        "run_dir": run_dir,
    }


def _fit_trainer(trainer: TorchTrainer):
    """``trainer.fit()``; a non-finite loss or a usage error on a worker surfaces as itself, not
    as Ray's generic worker-group failure (so it keeps its exit code and message). Ray Train
    retries a worker failure from the last checkpoint first (``max_failures``), which may
    recover from a one-off NaN."""
    from ray.train import WorkerGroupError

    try:
        return trainer.fit()
    except WorkerGroupError as exc:
        for failure in exc.worker_failures.values():
            cause = getattr(failure, "cause", None) or failure
            for kind in (NonFiniteLossError, UsageError):
                if isinstance(cause, kind):
                    raise kind(str(cause)) from exc
        raise


def fit_each(cfgs: list[TrainConfig]) -> list[dict[str, Any]]:
    """``fit`` each config in turn, consecutive runs on the same data sharing its datasets."""
    shared: dict = {}
    return [fit(cfg, shared) for cfg in cfgs]


def fit_all(base: TrainConfig, archs: list[str]) -> list[dict[str, Any]]:
    """Train each architecture in turn; write ``comparison.csv`` beside the runs."""
    from dataclasses import replace

    rows = fit_each([replace(base, arch=arch) for arch in archs])
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COMPARISON_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    storage.write_text(storage.join(base.storage, base.name, "comparison.csv"), out.getvalue())
    return rows


def format_comparison(rows: list[dict[str, Any]]) -> str:
    """The comparison as an aligned text table (best validation epoch of each architecture)."""
    lines = [f"{'arch':16s} {'params':>10s} {'epochs':>6s} {'liver':>6s} {'tumour':>6s} "
             f"{'IoU':>6s} {'F1':>6s} {'min':>6s}"]  # fmt: skip
    for r in rows:
        lines.append(
            f"{r['arch']:16s} {r['parameters']:>10,d} {r['epochs']:>6d} "
            f"{r['val_liver_dice']:>6.3f} {r['val_tumour_dice']:>6.3f} {r['val_iou']:>6.3f} "
            f"{r['val_f1']:>6.3f} {r['minutes']:>6.1f}"
        )
    return "\n".join(lines)
