"""What each Ray Train worker runs: DDP over N workers (gloo on CPU, NCCL on GPU).

Reads top to bottom: ``train_epoch``, ``validate``, ``train_loop``; the driver is ``runs.fit``.
A NaN or infinite loss stops the run before that epoch's checkpoint (``NonFiniteLossError``).
Data arrives from the shards through Ray Data (``get_dataset_shard``); checkpoints go through
``ray.train.report`` to local or ``s3://`` storage, written while the next epoch trains
(``async_checkpoint``), and restore the epoch, optimizer and
scheduler after a worker failure or when the same ``--name`` runs again.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

import livseg
from livseg.config import from_dict, to_dict
from livseg.errors import UsageError
from livseg.train.async_checkpoint import CheckpointWriter
from livseg.train.augment import AugmentConfig, augment_slices, augment_volumes
from livseg.train.checkpoint import load_train_state, load_weights, unwrap
from livseg.train.config import TrainConfig, validation_score
from livseg.train.counts import case_counts, confusion, foreground_iou_f1, summarise_cases
from livseg.train.losses import build_loss
from livseg.train.models import build_model, is_volumetric
from livseg.train.precision import memory_format, use_bf16


def epoch_batches(shard, batch_size: int, cfg: TrainConfig, seed: int, device):
    """This worker's training batches of one epoch: one pass over its shard, or with
    ``steps_per_epoch`` exactly that many batches, reading the shard again (reshuffled) when it
    is shorter: nnU-Net's fixed-length epoch. On a few volumes a pass is a handful of steps,
    and every epoch also validates and writes a checkpoint."""
    steps = passes = 0
    while True:
        # Equal shards (Ray Train's split) give every rank the same number of batches, which
        # DDP needs; the last batch may be short rather than dropped (small volume sets).
        batches = shard.iter_torch_batches(
            batch_size=batch_size, local_shuffle_buffer_size=cfg.shuffle_buffer,
            local_shuffle_seed=seed + 7919 * passes, device=device, prefetch_batches=4,
        )  # fmt: skip
        before = steps
        for batch in batches:
            yield batch
            steps += 1
            if steps == cfg.steps_per_epoch:
                return
        passes += 1
        if not cfg.steps_per_epoch or steps == before:  # one pass, or an empty shard
            return


def train_epoch(model, loader, loss_fn, opt, cfg: TrainConfig, gen, classes: int, device):
    """One epoch of ``loader`` (``epoch_batches``); returns summed (loss·n, n), the confusion
    and the first step with a non-finite loss (-1 when none), as tensors on ``device``."""
    model.train()
    bf16 = use_bf16(cfg, device)
    volumetric = is_volumetric(cfg.arch)
    augment = augment_volumes if volumetric else augment_slices
    aug_cfg = AugmentConfig(flip=cfg.flip, crop=cfg.crop)
    loss_sum = torch.zeros(2, dtype=torch.float64, device=device)
    conf = torch.zeros(classes, classes, dtype=torch.float64, device=device)
    # First step whose loss was NaN/inf (-1: none), kept on the device: checking it every step
    # would synchronise a GPU; the caller checks once per epoch, before anything is saved.
    bad_step = torch.full((), -1, dtype=torch.long, device=device)
    for step, batch in enumerate(loader):
        x, y = batch["image"].float(), batch["mask"].long()
        if cfg.augment:
            x, y = augment(x, y, aug_cfg, gen)
        x = x.contiguous(memory_format=memory_format(x.ndim))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        loss = loss_fn(logits.float(), y)
        first_bad = (bad_step < 0) & ~torch.isfinite(loss.detach())
        bad_step = torch.where(first_bad, torch.full_like(bad_step, step), bad_step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += torch.stack([loss.detach().double() * len(x), x.new_tensor(len(x)).double()])
        conf += confusion(logits.detach().argmax(1), y, classes)
    if loss_sum[1] == 0:
        raise UsageError("a training worker got no batch: too few training rows for --workers")
    return loss_sum, conf, bad_step


@torch.no_grad()
def validate(model, loader, loss_fn, case_lookup, classes: int, cfg, device, rank=0, world=1):
    """Summed (loss·n, n), confusion and per-case counts of this rank's validation rows.

    Every rank sees the whole validation set (it is not split: an equal split would drop rows)
    and scores the cases with ``index % world == rank``, so the all-reduced counts cover each
    row exactly once whatever order the rows arrive in.
    """
    model = unwrap(model).eval()  # no DDP: ranks score different numbers of rows
    n_cases = int((case_lookup >= 0).sum())
    loss_sum = torch.zeros(2, dtype=torch.float64, device=device)
    conf = torch.zeros(classes, classes, dtype=torch.float64, device=device)
    counts = torch.zeros(n_cases, 2, 3, dtype=torch.float64, device=device)
    for batch in loader:
        case_index = case_lookup[batch["case_id"].long()]
        mine = case_index % world == rank
        if not mine.any():
            continue
        x, y = batch["image"][mine].float(), batch["mask"][mine].long()
        x = x.contiguous(memory_format=memory_format(x.ndim))
        # bf16 only on GPUs: on a CPU, validation stays fp32 so that a reload scores the same.
        bf16 = device.type == "cuda" and use_bf16(cfg, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x).float()
        n = x.new_tensor(len(x)).double()
        loss_sum += torch.stack([loss_fn(logits, y).double() * n, n])
        pred = logits.argmax(1)
        conf += confusion(pred, y, classes)
        counts += case_counts(pred, y, case_index[mine], n_cases)
    return loss_sum, conf, counts


def _all_reduce(*tensors: torch.Tensor, op: str = "sum") -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        for t in tensors:
            torch.distributed.all_reduce(t, op=getattr(torch.distributed.ReduceOp, op.upper()))


def train_loop(config: dict[str, Any]) -> None:
    """What every Ray Train worker runs."""
    import ray.train
    import ray.train.torch

    cfg = from_dict(TrainConfig, config["train"])
    record = config["record"]
    rank = ray.train.get_context().get_world_rank()
    world = ray.train.get_context().get_world_size()
    device = ray.train.torch.get_device()
    volumetric = is_volumetric(cfg.arch)
    classes = len(record["label_map"])
    in_channels = 1 if volumetric else record["channels"]
    batch_size = min(cfg.batch_size, cfg.volume_batch_size) if volumetric else cfg.batch_size
    torch.manual_seed(cfg.seed)
    if not cfg.gpu:  # one thread per reserved CPU, or the cap the driver read (torch_threads)
        torch.set_num_threads(config["threads"])

    checkpoint = ray.train.get_checkpoint()
    weights = "none" if checkpoint or cfg.init else cfg.encoder_weights
    model = build_model(cfg.arch, in_channels, classes, weights)
    train_state = None
    if cfg.init and not checkpoint:  # fine-tuning starts from these weights (checked on the driver)
        model.load_state_dict(load_weights(cfg.init))
    if checkpoint:
        with checkpoint.as_directory() as folder:
            model.load_state_dict(torch.load(Path(folder, "model.pt"), weights_only=True))
            train_state = load_train_state(folder)
    model = model.to(memory_format=memory_format(5 if volumetric else 4))
    model = ray.train.torch.prepare_model(model)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    run_started = config["started"]  # this run's start, also after a resume or worker restart
    state = {"epoch": 0, "history": [], "best": -math.inf, "stale": 0}
    resumed_from = 0
    if train_state:
        opt.load_state_dict(train_state["optimizer"])
        sched.load_state_dict(train_state["scheduler"])
        state.update(train_state["state"])
        resumed_from = state["epoch"]
    loss_fn = build_loss(cfg.dice, cfg.focal, cfg.gamma)
    val_ids = record["splits"]["val"]["case_ids"]
    case_lookup = torch.full((max(val_ids, default=0) + 1,), -1, dtype=torch.long, device=device)
    case_lookup[torch.tensor(val_ids, dtype=torch.long, device=device)] = torch.arange(
        len(val_ids), device=device
    )
    gen = torch.Generator(device=device)
    writer = CheckpointWriter()  # rank 0's checkpoints, written while the next epoch trains
    train_shard = ray.train.get_dataset_shard("train")
    val_shard = ray.train.get_dataset_shard("val")

    for epoch in range(state["epoch"], cfg.epochs):
        started = time.time()
        epoch_seed = cfg.seed * 100_003 + epoch * 1009 + rank
        gen.manual_seed(epoch_seed)
        loader = epoch_batches(train_shard, batch_size, cfg, epoch_seed, device)
        t_loss, t_conf, bad_step = train_epoch(
            model, loader, loss_fn, opt, cfg, gen, classes, device
        )
        try:
            check_finite(cfg, epoch, bad_step)
        except NonFiniteLossError:
            writer.wait()  # the last finite epoch's checkpoint is written before the run fails
            raise
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_seconds = time.time() - started
        sched.step()
        v_loader = val_shard.iter_torch_batches(batch_size=batch_size, device=device)
        v_loss, v_conf, counts = validate(
            model, v_loader, loss_fn, case_lookup, classes, cfg, device, rank, world
        )
        _all_reduce(t_loss, t_conf, v_loss, v_conf, counts)
        cases = summarise_cases(counts.cpu())
        metrics = {
            "epoch": epoch + 1,
            "train_loss": float(t_loss[0] / t_loss[1].clamp(min=1)),
            "val_loss": float(v_loss[0] / v_loss[1].clamp(min=1)),
            "val_liver_dice": cases["liver_dice"],
            "val_tumour_dice": cases["tumour_dice"],
            "lr": opt.param_groups[0]["lr"],
            "seconds": round(time.time() - started, 2),
            "train_rows": int(t_loss[1]),
            "train_rows_per_s": float(t_loss[1]) / max(train_seconds, 1e-9),
            "resumed_from_epoch": resumed_from,
        }
        metrics["train_iou"], metrics["train_f1"] = foreground_iou_f1(t_conf.cpu())
        metrics["val_iou"], metrics["val_f1"] = foreground_iou_f1(v_conf.cpu())
        metrics["val_score"] = validation_score(metrics)
        improved = metrics["val_score"] > state["best"] + 1e-4
        state["best"] = max(state["best"], metrics["val_score"])
        state["stale"] = 0 if improved else state["stale"] + 1
        state["history"].append(metrics)
        state["epoch"] = epoch + 1
        stop = torch.tensor(float(should_stop(cfg, state, run_started, time.time())), device=device)
        _all_reduce(stop, op="max")  # every rank stops after the same epoch (DDP needs it)
        ckpt = upload = None
        if rank == 0:
            meta = _meta(cfg, record, in_channels, classes, metrics)
            ts = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "state": state}
            ckpt, upload = writer.stage(model, meta, ts)
        ray.train.report(
            metrics, checkpoint=ckpt, checkpoint_upload_fn=upload,
            checkpoint_upload_mode=ray.train.CheckpointUploadMode.ASYNC,
        )  # fmt: skip
        if stop:
            break


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; nothing of that epoch was saved."""


def check_finite(cfg: TrainConfig, epoch: int, bad_step: torch.Tensor) -> None:
    """Raise ``NonFiniteLossError`` naming the epoch and step when any rank saw a non-finite
    loss (``bad_step`` ≥ 0), before the epoch's checkpoint could be written."""
    # The earliest step on any rank: one rank's NaN poisons every rank's weights through DDP.
    none = 2**62
    first = torch.where(bad_step < 0, torch.full_like(bad_step, none), bad_step)
    _all_reduce(first, op="min")
    if int(first) < none:
        raise NonFiniteLossError(
            f"{cfg.arch}: the training loss became NaN or infinite at epoch {epoch + 1}, step "
            f"{int(first) + 1} (lr {cfg.lr:g}, precision {cfg.precision}); the run stops before "
            "saving this epoch. Lower the learning rate (--set lr=...) or train in fp32 "
            "(--set precision=fp32)"
        )


def should_stop(cfg: TrainConfig, state: dict, run_started: float, now: float) -> bool:
    """Early stopping (``patience`` epochs without a better validation score) or the time
    limit, counted from the start of this run (a resumed run gets its own budget)."""
    if state["stale"] >= cfg.patience:
        return True
    return bool(cfg.time_limit_min) and (now - run_started) / 60 >= cfg.time_limit_min


def _meta(cfg: TrainConfig, record: dict, in_channels: int, classes: int, metrics: dict) -> dict:
    config = record["config"]
    grid = config["volume_size"] if is_volumetric(cfg.arch) else [config["size"]] * 2
    return {
        # What the validation metrics were scored on: the registry compares only like with like.
        "validation": {
            "data": record.get("fingerprint"),
            "split": "val",
            "case_ids": sorted(record["splits"]["val"]["case_ids"]),
            "grid": list(grid),
        },
        "arch": cfg.arch,
        "in_channels": in_channels,
        "classes": classes,
        "label_map": record["label_map"],
        "preprocess": record,
        "train": to_dict(cfg),
        "metrics": metrics,
        "torch_threads": torch.get_num_threads(),  # the worker's (runtime.torch_threads)
        "livseg_version": livseg.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
