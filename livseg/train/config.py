"""``TrainConfig``: one training run of one architecture, and the validation score that
chooses checkpoints, stops early, drives ASHA and ranks models in the registry."""

from __future__ import annotations

from dataclasses import dataclass

from livseg.errors import UsageError

STUDY_ARCHS = ("unet", "unet-resnet34", "vnet")
SCORE_METRIC = "val_score"


@dataclass(frozen=True)
class TrainConfig:
    """One training run of one architecture (defaults: the study's Adam 1e-4, batch 8)."""

    data: str = ""
    arch: str = "unet-resnet34"
    epochs: int = 20
    batch_size: int = 8
    volume_batch_size: int = 2  # 3-D models (vnet): volumes per batch
    lr: float = 1e-4
    weight_decay: float = 0.0
    dice: float = 0.8
    focal: float = 0.2
    gamma: float = 2.0
    encoder_weights: str = "none"
    # A checkpoint (folder or s3://) of the same architecture, channels and classes whose weights
    # start training: fine-tuning, e.g. a sweep of loss weights from a trained model. A resumed
    # run continues from its own checkpoint instead.
    init: str = ""
    workers: int = 2
    gpu: bool = False
    cpus_per_worker: float = 0.5  # fractional on CPU: Ray Data's read tasks need CPUs too
    augment: bool = True
    flip: float = 0.0
    # Train on square windows of this side sampled from each slice at its own resolution (tumour
    # slices around their tumour; livseg.train.augment); 0: whole slices. Validation and
    # inference see whole slices.
    crop: int = 0
    patience: int = 5  # epochs without a better validation score before stopping
    seed: int = 0
    storage: str = "livseg-work/runs"
    name: str = "default"
    keep: int = 2  # best checkpoints kept (by validation score)
    max_failures: int = 2
    # Batches per epoch, the shard read again when shorter (loop.epoch_batches); 0: one pass.
    steps_per_epoch: int = 0
    time_limit_min: float = 0.0  # stop after the epoch that crosses it; 0: no limit
    shuffle_buffer: int = 256  # rows in each worker's local shuffle buffer
    # Share of each epoch's training slices that hold tumour, by repeating tumour slices
    # (livseg.train.sampling; nnU-Net uses 0.33); 0: the slices as they are.
    tumour_share: float = 0.0
    # Training autocast: auto (bf16 on GPUs and CPUs where it trains right:
    # livseg.train.precision), bf16, fp32.
    precision: str = "auto"

    def __post_init__(self) -> None:
        if min(self.epochs, self.batch_size, self.volume_batch_size, self.workers) < 1:
            raise UsageError("epochs, batch sizes and workers must be at least 1")
        if self.lr <= 0:
            raise UsageError(f"lr={self.lr}: must be positive")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise UsageError(f"precision={self.precision!r}: use auto, bf16 or fp32")
        if not 0.0 <= self.tumour_share < 1.0:
            raise UsageError(f"tumour_share={self.tumour_share}: must be within [0, 1)")
        if self.crop < 0 or self.crop % 32:
            raise UsageError(f"crop={self.crop}: 0 (whole slices) or a multiple of 32 pixels")
        if self.crop and not self.augment:
            raise UsageError(f"crop={self.crop} needs augment (windows are cut by the warp)")
        if self.seed < 0:  # Ray Data's shuffle buffer seeds numpy, which refuses negative seeds
            raise UsageError(f"seed={self.seed}: must be 0 or more")
        if self.cpus_per_worker <= 0:
            raise UsageError(f"cpus_per_worker={self.cpus_per_worker}: must be positive")
        # Checked here, on the driver: on a worker the same mistake would be retried as a fault.
        if min(self.dice, self.focal, self.gamma) < 0 or self.dice == self.focal == 0:
            raise UsageError(
                f"loss weights dice={self.dice}, focal={self.focal}, gamma={self.gamma}: "
                "non-negative, and dice or focal above 0"
            )


def validation_score(metrics: dict[str, float]) -> float:
    """Validation score: mean of liver and tumour Dice (liver alone where no validation case
    has tumour). Tumour Dice alone, on a handful of validation cases, picked epochs whose liver
    was clearly worse (held-out liver 0.891 vs 0.943 one epoch later in the quality test)."""
    values = [v for v in (metrics["val_liver_dice"], metrics["val_tumour_dice"]) if v == v]
    return sum(values) / len(values) if values else -1.0
