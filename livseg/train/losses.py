"""The study's hybrid loss: ``dice · DiceLoss + focal · FocalLoss`` from smp's losses.

Works for 2-D logits (N, C, H, W) and 3-D logits (N, C, D, H, W) with integer targets
(N, H, W) / (N, D, H, W); multiclass (background / liver / tumour) or the study's binary mode
(two classes, background / liver+tumour).
"""

from __future__ import annotations

import torch
from segmentation_models_pytorch.losses import DiceLoss, FocalLoss
from torch import nn

from livseg.errors import UsageError


class HybridLoss(nn.Module):
    """Weighted sum of multiclass soft Dice and focal loss on logits."""

    def __init__(self, dice: float, focal: float, gamma: float) -> None:
        super().__init__()
        self.weights = (float(dice), float(focal))
        self.dice = DiceLoss(mode="multiclass", from_logits=True)
        self.focal = FocalLoss(mode="multiclass", gamma=gamma)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        dice_w, focal_w = self.weights
        loss = logits.new_zeros(())
        if dice_w:
            loss = loss + dice_w * self.dice(logits, target)
        if focal_w:
            loss = loss + focal_w * self.focal(logits, target)
        return loss


def build_loss(dice: float = 0.8, focal: float = 0.2, gamma: float = 2.0) -> HybridLoss:
    """The loss factory; weights must be non-negative and not both zero."""
    if dice < 0 or focal < 0:
        raise UsageError(f"loss weights dice={dice}, focal={focal}: must be non-negative")
    if dice == 0 and focal == 0:
        raise UsageError("loss weights dice=0, focal=0: at least one must be positive")
    if gamma < 0:
        raise UsageError(f"focal gamma={gamma}: must be non-negative")
    return HybridLoss(dice, focal, gamma)


def parse_loss_weights(text: str) -> dict[str, float]:
    """``"dice=0.8,focal=0.2"`` → ``{"dice": 0.8, "focal": 0.2}`` (the --loss-weights flag)."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or key not in ("dice", "focal", "gamma"):
            raise UsageError(f"--loss-weights {text!r}: write dice=0.8,focal=0.2[,gamma=2]")
        try:
            out[key] = float(value)
        except ValueError as exc:
            raise UsageError(f"--loss-weights {text!r}: {value!r} is not a number") from exc
    return out
