"""On-the-fly augmentation of training batches (torch, on the worker's device).

The study names flipping, rotation and intensity scaling. Geometry: rotation, scaling and shift
in one affine warp (images bilinear, masks nearest). Intensity: scale, offset and added noise in
z-score units. Left/right flips are off by default: the spleen sits mirrored at liver-like HU,
so a flipped abdomen teaches the wrong side (turn on with ``flip``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    rotate_deg: float = 15.0
    scale: tuple[float, float] = (0.85, 1.2)
    shift: float = 0.08  # fraction of the image size
    intensity_scale: float = 0.1  # ± fraction
    intensity_shift: float = 0.1  # ± z units
    noise: float = 0.1  # max σ of added Gaussian noise, z units
    flip: float = 0.0  # probability of a left/right flip


def _uniform(n: int, low: float, high: float, gen: torch.Generator, device) -> torch.Tensor:
    """Draws on the generator's device (create it with ``torch.Generator(device=…)``)."""
    return torch.rand(n, generator=gen, device=gen.device).to(device) * (high - low) + low


def augment_slices(
    images: torch.Tensor, masks: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shape: images (B, C, H, W) float, masks (B, H, W) int64 → same shapes, augmented."""
    b, device = images.shape[0], images.device
    angle = _uniform(b, -cfg.rotate_deg, cfg.rotate_deg, gen, device) * math.pi / 180
    scale = _uniform(b, *cfg.scale, gen, device)
    flip = torch.where(_uniform(b, 0, 1, gen, device) < cfg.flip, -1.0, 1.0)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.zeros(b, 2, 3, device=device)
    # A slice is volume[:, :, z]: rows (H) run along x (left/right), columns (W) along y
    # (anterior/posterior). grid_sample's second coordinate indexes H, so negating it mirrors
    # left and right.
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * flip
    theta[:, 1, 0], theta[:, 1, 1] = sin, cos * flip
    theta[:, :, 2] = _uniform(2 * b, -2 * cfg.shift, 2 * cfg.shift, gen, device).view(b, 2)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    # Pad with each image's own minimum (air after windowing), not with zero (= liver mean).
    fill = images.amin(dim=(2, 3), keepdim=True)
    warped = F.grid_sample(images - fill, grid, mode="bilinear", align_corners=False) + fill
    masks = F.grid_sample(masks[:, None].float(), grid, mode="nearest", align_corners=False)
    return _intensity(warped, cfg, gen), masks[:, 0].long()


def augment_volumes(
    images: torch.Tensor, masks: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shape: images (B, 1, X, Y, Z), masks (B, X, Y, Z): intensity changes only."""
    return _intensity(images, cfg, gen), masks


def _intensity(images: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    b, device = images.shape[0], images.device
    view = (b,) + (1,) * (images.ndim - 1)
    gain = _uniform(b, 1 - cfg.intensity_scale, 1 + cfg.intensity_scale, gen, device).view(view)
    offset = _uniform(b, -cfg.intensity_shift, cfg.intensity_shift, gen, device).view(view)
    sigma = _uniform(b, 0, cfg.noise, gen, device).view(view)
    noise = torch.randn(images.shape, generator=gen, device=gen.device).to(device) * sigma
    return images * gain + offset + noise
