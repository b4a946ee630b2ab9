"""Training: the study's architectures (``build_model``), the hybrid loss (``build_loss``),
augmentation, overlap counts, the per-worker loop and the Ray Train driver, checkpoints."""

from livseg.train.augment import AugmentConfig, augment_slices, augment_volumes, check_crop
from livseg.train.checkpoint import (
    META_FILE, MODEL_FILE, check_init, load_checkpoint, load_train_state, read_meta,
    save_checkpoint, update_meta,
)
from livseg.train.config import SCORE_METRIC, STUDY_ARCHS, TrainConfig, validation_score
from livseg.train.counts import (
    case_counts, confusion, dice_from_counts, foreground_iou_f1, structure_masks,
    summarise_cases,
)
from livseg.train.history import write_history
from livseg.train.loop import NonFiniteLossError, count_parameters, train_epoch, train_loop
from livseg.train.losses import build_loss, parse_loss_weights
from livseg.train.models import available_archs, build_model, is_volumetric
from livseg.train.precision import memory_format, use_bf16
from livseg.train.runs import (
    build_trainer, checkpoint_uri, fit, fit_all, fit_each, format_comparison,
)
from livseg.train.scoring import predict_labels, score_split

__all__ = [
    "META_FILE", "MODEL_FILE", "SCORE_METRIC", "STUDY_ARCHS", "AugmentConfig",
    "NonFiniteLossError", "TrainConfig", "augment_slices", "augment_volumes", "available_archs",
    "build_loss", "build_model", "build_trainer", "case_counts", "check_crop", "check_init",
    "checkpoint_uri",
    "confusion",
    "count_parameters", "dice_from_counts", "fit", "fit_all", "fit_each", "foreground_iou_f1",
    "format_comparison", "is_volumetric", "load_checkpoint", "load_train_state",
    "memory_format", "parse_loss_weights", "predict_labels", "read_meta", "save_checkpoint",
    "score_split", "structure_masks", "summarise_cases", "train_epoch", "train_loop",
    "update_meta", "use_bf16", "validation_score", "write_history",
]  # fmt: skip
