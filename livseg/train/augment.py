"""On-the-fly augmentation of training batches (torch, on the worker's device).

The study names flipping, rotation and intensity scaling. Geometry: rotation, scaling and shift
in one affine warp (images bilinear, masks nearest). Intensity: scale, offset and added noise in
z-score units. Left/right flips are off by default: the spleen sits mirrored at liver-like HU,
so a flipped abdomen teaches the wrong side (turn on with ``flip``).

Crops (``crop``): the same warp can sample a ``crop`` × ``crop`` window at the slice's own
resolution instead of the whole slice, nnU-Net's patch training: a tumour stage trains on its
liver box at full resolution for the cost of a smaller image, and infers on the whole box (the
networks are fully convolutional). A slice that holds tumour is cropped around one of its
tumour pixels, so the tumour share of the sampler (``livseg.train.sampling``) carries over to
the crops; other slices anywhere inside the slice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from livseg.data import TUMOUR
from livseg.errors import UsageError


@dataclass(frozen=True)
class AugmentConfig:
    rotate_deg: float = 15.0
    scale: tuple[float, float] = (0.85, 1.2)
    shift: float = 0.08  # fraction of the image size
    intensity_scale: float = 0.1  # ± fraction
    intensity_shift: float = 0.1  # ± z units
    noise: float = 0.1  # max σ of added Gaussian noise, z units
    flip: float = 0.0  # probability of a left/right flip
    crop: int = 0  # side of the square window sampled from each slice (0: the whole slice)


def _uniform(n: int, low: float, high: float, gen: torch.Generator, device) -> torch.Tensor:
    """Draws on the generator's device (create it with ``torch.Generator(device=…)``)."""
    return torch.rand(n, generator=gen, device=gen.device).to(device) * (high - low) + low


def check_crop(crop: int, arch: str, record: dict) -> None:
    """Refuse (on the driver) a ``TrainConfig.crop`` these shards cannot give: windows are
    for 2-D models and smaller than the shards' slices (``record``: their preprocess record)."""
    from livseg.train.models import is_volumetric

    if not crop:
        return
    if is_volumetric(arch):
        raise UsageError(f"crop={crop}: {arch} trains on whole volumes; use crop=0")
    size = record["config"]["size"]
    if crop >= size:
        raise UsageError(
            f"crop={crop}: windows must be smaller than the shards' {size}² slices; use a "
            f"multiple of 32 below {size}, or 0 for whole slices"
        )


def crop_centres(masks: torch.Tensor, crop: int, gen: torch.Generator) -> torch.Tensor:
    """Window centres in grid_sample's coordinates, shape (B, 2) as (w, h) in [-1, 1], for
    masks (B, H, W): around a random tumour pixel (± a quarter of the window) where the slice
    holds tumour, else uniform; the window inside the slice, its centre on a pixel edge."""
    b, h, w = masks.shape
    device = masks.device
    share = torch.tensor([min(crop / w, 1.0), min(crop / h, 1.0)], device=device)
    centres = _uniform(2 * b, -1, 1, gen, device).view(b, 2) * (1 - share)
    jitter = _uniform(2 * b, -0.5, 0.5, gen, device).view(b, 2) * share
    # One tumour pixel per slice, drawn on the generator's device without a per-slice sync.
    tumour = (masks == TUMOUR).flatten(1)
    has = tumour.any(dim=1)
    weights = (tumour | ~has[:, None]).float().to(gen.device)  # uniform where none (unused)
    pick = torch.multinomial(weights, 1, generator=gen)[:, 0].to(device)
    pixel = torch.stack([(2 * (pick % w) + 1) / w - 1, (2 * (pick // w) + 1) / h - 1], dim=1)
    centres = torch.where(has[:, None], pixel.float() + jitter, centres)
    # Inside the slice (a lesion at its edge stays in the window), on a pixel edge: an even
    # window's pixels then fall on the slice's (no interpolation unless the warp rotates or
    # scales).
    centres = torch.maximum(torch.minimum(centres, 1 - share), share - 1)
    size = torch.tensor([w, h], device=device, dtype=torch.float32)
    return torch.round((centres + 1) * size / 2) * 2 / size - 1


def augment_slices(
    images: torch.Tensor, masks: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shape: images (B, C, H, W) float, masks (B, H, W) int64 → augmented, same shapes, or
    (B, C, crop, crop) and (B, crop, crop) with ``cfg.crop``."""
    b, device = images.shape[0], images.device
    out = list(images.shape)
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
    if cfg.crop:
        # The window's side as a share of the slice's (columns, rows) scales the rows of the
        # map (a window in pixels, then rotated and scaled about its centre); the window's
        # placement is its shift (a whole-slice shift on top could move a lesion out of it).
        share = theta.new_tensor([cfg.crop / images.shape[3], cfg.crop / images.shape[2]])
        theta[:, :, :2] = share[:, None] * theta[:, :, :2]
        theta[:, :, 2] = crop_centres(masks, cfg.crop, gen).to(device)
        out[2:] = [cfg.crop, cfg.crop]
    else:
        theta[:, :, 2] = _uniform(2 * b, -2 * cfg.shift, 2 * cfg.shift, gen, device).view(b, 2)
    grid = F.affine_grid(theta, out, align_corners=False)
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
