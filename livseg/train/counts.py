"""Overlap counts for training and validation in torch: they add across batches and workers.

Counts (intersection, predicted, reference voxels) add across batches, slices and DDP workers,
so a case split over many batches is scored exactly: reduce sums, never means. Structures follow
LiTS: liver = label ≥ 1 (liver incl. tumour), tumour = label 2.
"""

from __future__ import annotations

import torch

from livseg.data import STRUCTURES


def structure_masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(liver = label ≥ 1, tumour = label == 2) boolean masks of any shape."""
    return labels >= 1, labels == 2


def case_counts(
    pred: torch.Tensor, target: torch.Tensor, case_index: torch.Tensor, n_cases: int
) -> torch.Tensor:
    """Per-case overlap counts of a batch.

    Shape: ``pred``/``target`` (B, *spatial) integer labels, ``case_index`` (B,) in
    [0, n_cases) → counts (n_cases, 2 structures, 3) float64: intersection, predicted, reference.
    """
    out = torch.zeros(n_cases, len(STRUCTURES), 3, dtype=torch.float64, device=pred.device)
    dims = tuple(range(1, pred.ndim))
    for s, (p, t) in enumerate(zip(structure_masks(pred), structure_masks(target), strict=True)):
        stats = torch.stack([(p & t).sum(dims), p.sum(dims), t.sum(dims)], dim=1).double()
        out[:, s].index_add_(0, case_index, stats)
    return out


def dice_from_counts(counts: torch.Tensor) -> torch.Tensor:
    """(n_cases, 2, 3) counts → (n_cases, 2) Dice; both empty → 1.0."""
    inter, pred, ref = counts.unbind(-1)
    denom = pred + ref
    return torch.where(denom > 0, 2 * inter / denom.clamp(min=1e-9), torch.ones_like(denom))


def confusion(pred: torch.Tensor, target: torch.Tensor, classes: int) -> torch.Tensor:
    """(classes, classes) pixel confusion matrix, rows = reference, columns = prediction."""
    idx = target.reshape(-1).long() * classes + pred.reshape(-1).long()
    return torch.bincount(idx, minlength=classes * classes).reshape(classes, classes).double()


def foreground_iou_f1(conf: torch.Tensor) -> tuple[float, float]:
    """IoU and F1 of foreground (label > 0) pooled over pixels: the study's table columns."""
    tp = conf[1:, 1:].sum()
    fp = conf[0, 1:].sum()
    fn = conf[1:, 0].sum()
    iou = tp / (tp + fp + fn) if tp + fp + fn > 0 else torch.tensor(1.0)
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn > 0 else torch.tensor(1.0)
    return float(iou), float(f1)


def summarise_cases(counts: torch.Tensor) -> dict[str, float]:
    """Mean per-case Dice: liver over cases with liver, tumour over cases with tumour.

    Cases without the structure in the reference are left out of its mean (as the quality
    targets are stated); a NaN means no case had it.
    """
    dice = dice_from_counts(counts)
    present = counts[..., 2] > 0
    out = {}
    for s, name in enumerate(STRUCTURES):
        values = dice[present[:, s], s]
        out[f"{name}_dice"] = float(values.mean()) if len(values) else float("nan")
    out["cases"] = int(present[:, 0].sum())
    return out
