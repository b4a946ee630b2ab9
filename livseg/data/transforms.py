"""Pure preprocessing functions: numpy in, numpy out, no Ray, no I/O.

Order for one axial slice (the study's recipe, made explicit):
HU window → bilateral filter (native resolution) → resize to ``size`` → z-score with the
training split's liver statistics. The image steps run as the torch ops of ``slice_ops`` (on
the CPU here; the Segmenter runs the same ops on the model's device); masks are resized with
OpenCV's nearest neighbour.
Volumes are canonical RAS+ arrays of shape (X, Y, Z); a slice is ``volume[:, :, z]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from scipy import ndimage

from livseg.data.config import PreprocessConfig
from livseg.data.slice_ops import bilateral_slices, preprocess_slices, resize_slices
from livseg.errors import UsageError

LIVER, TUMOUR = 1, 2
STRUCTURES = ("liver", "tumour")  # LiTS: liver = label ≥ 1 (incl. tumour), tumour = 2
LABEL_MAPS = {
    "multiclass": {"background": 0, "liver": 1, "tumour": 2},
    "binary": {"background": 0, "liver+tumour": 1},
}


@dataclass(frozen=True)
class IntensityStats:
    """Foreground (liver) intensity statistics in windowed HU, from the training split."""

    mean: float
    std: float
    p005: float
    p995: float
    voxels: int


def window(hu: np.ndarray, low: float, high: float) -> np.ndarray:
    """Clip HU values to ``[low, high]``; float32 out, any shape."""
    return np.clip(hu.astype(np.float32, copy=False), low, high)


def bilateral_filter(
    image: np.ndarray, diameter: int, sigma_color: float, sigma_space: float
) -> np.ndarray:
    """Edge-preserving smoothing of one 2-D slice (H, W) float32 (OpenCV's definition).

    Weights are ``exp(-|p-q|²/2σ_s²) · exp(-|I(p)-I(q)|²/2σ_r²)``, normalised, with σ_r in the
    image's own units (HU here).
    """
    batch = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]
    return bilateral_slices(batch, diameter, sigma_color, sigma_space)[0].numpy()


def zscore(image: np.ndarray, mean: float, std: float) -> np.ndarray:
    """``(x − μ) / σ`` with stored statistics; float32 out."""
    if std <= 0:
        raise ValueError(f"std={std}: z-score needs a positive standard deviation")
    return ((image - mean) / std).astype(np.float32)


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Resize a (H, W) image to (size, size): area averaging when shrinking, else bilinear."""
    batch = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]
    return resize_slices(batch, (size, size))[0].numpy()


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Resize a (H, W) label mask to (size, size) with nearest neighbour (keeps the label set)."""
    return cv2.resize(mask.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST)


def encode_labels(labels: np.ndarray, mode: str = "multiclass") -> np.ndarray:
    """Map LiTS labels (0 bg, 1 liver, 2 tumour) to the training target; uint8, same shape.

    ``binary`` is the study's encoding (``0 if x <= 0 else 1``): liver and tumour merged.
    """
    if mode == "multiclass":
        return np.minimum(labels, TUMOUR).astype(np.uint8)
    if mode == "binary":
        return (labels > 0).astype(np.uint8)
    raise ValueError(f"label mode {mode!r}: use 'multiclass' or 'binary'")


def liver_histogram(hu: np.ndarray, labels: np.ndarray, low: float, high: float) -> np.ndarray:
    """Counts of windowed HU over liver+tumour voxels in 1-HU bins from ``low`` to ``high``.

    Histograms add across cases, so the training split's statistics reduce exactly.
    """
    values = window(hu[labels > 0], low, high)
    bins = int(np.ceil(high - low)) + 1
    idx = np.clip(np.rint(values - low).astype(np.int64), 0, bins - 1)
    return np.bincount(idx, minlength=bins).astype(np.int64)


def stats_from_histogram(hist: np.ndarray, low: float) -> IntensityStats:
    """Mean, std and 0.5/99.5 percentiles from a ``liver_histogram`` sum."""
    total = int(hist.sum())
    if total == 0:
        raise UsageError(
            "no liver voxels in the training split; cannot compute z-score statistics "
            "(are the masks LiTS labels 1 liver / 2 tumour?)"
        )
    centres = low + np.arange(len(hist), dtype=np.float64)
    mean = float((hist * centres).sum() / total)
    std = float(np.sqrt((hist * (centres - mean) ** 2).sum() / total))
    cdf = np.cumsum(hist) / total
    p005 = float(centres[np.searchsorted(cdf, 0.005)])
    p995 = float(centres[min(np.searchsorted(cdf, 0.995), len(hist) - 1)])
    return IntensityStats(mean, max(std, 1e-3), p005, p995, total)


def bounding_box(mask: np.ndarray, margin: int = 0) -> tuple[slice, ...] | None:
    """Slices of the smallest box holding every True voxel, grown by ``margin`` and clipped to
    the array; None for an empty mask. Any number of dimensions."""
    box = []
    for axis, size in enumerate(mask.shape):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=others) if others else mask)
        if hits.size == 0:
            return None
        box.append(slice(max(int(hits[0]) - margin, 0), min(int(hits[-1]) + 1 + margin, size)))
    return tuple(box)


def slab_indices(z: int, context: int, depth: int) -> list[int]:
    """Slice indices of the 2.5-D slab around ``z``, inferior to superior, clamped at the ends."""
    return [min(max(z + d, 0), depth - 1) for d in range(-context, context + 1)]


def select_slices(
    labels: np.ndarray, margin: int, other_fraction: float, rng: np.random.Generator
) -> np.ndarray:
    """Indices of kept axial slices: every liver slice, ``margin`` around them, and a random
    ``other_fraction`` of the rest. ``labels`` (X, Y, Z); returns sorted int64 indices."""
    depth = labels.shape[2]
    has_liver = (labels > 0).any(axis=(0, 1))
    keep = has_liver.copy()
    if has_liver.any():
        z = np.flatnonzero(has_liver)
        keep[max(z.min() - margin, 0) : z.max() + margin + 1] = True
    rest = np.flatnonzero(~keep)
    if len(rest) and other_fraction > 0:
        chosen = rng.random(len(rest)) < other_fraction
        keep[rest[chosen]] = True
    return np.flatnonzero(keep) if depth else np.zeros(0, np.int64)


def process_slices(
    hu: np.ndarray, indices: list[int], cfg: PreprocessConfig, stats: IntensityStats
) -> dict[int, np.ndarray]:
    """Axial slices ``indices`` of an (X, Y, Z) HU volume → {index: normalised (size, size)
    float32}, in chunks of 32 slices (memory stays at a few copies of one chunk)."""
    bilateral = (
        (cfg.bilateral_diameter, cfg.bilateral_sigma_color, cfg.bilateral_sigma_space)
        if cfg.bilateral
        else None
    )
    out = {}
    for start in range(0, len(indices), 32):
        chunk = list(indices[start : start + 32])
        slices = np.ascontiguousarray(np.moveaxis(hu[:, :, chunk], -1, 0), dtype=np.float32)
        images = preprocess_slices(torch.from_numpy(slices), cfg.size, cfg.window, bilateral,
                                   stats.mean, stats.std).numpy()  # fmt: skip
        out.update(zip(chunk, images, strict=True))
    return out


def process_slice(hu_slice: np.ndarray, cfg: PreprocessConfig, stats: IntensityStats) -> np.ndarray:
    """One axial HU slice (X, Y) → normalised (size, size) float32."""
    return process_slices(hu_slice[:, :, None], [0], cfg, stats)[0]


def slice_samples(
    hu: np.ndarray,
    labels: np.ndarray | None,
    indices: np.ndarray,
    cfg: PreprocessConfig,
    stats: IntensityStats,
) -> dict[str, np.ndarray]:
    """2.5-D samples for the slices ``indices`` of one volume.

    Shape: ``image`` (N, C, size, size) float16 with C = 2K+1 neighbours inferior→superior,
    ``mask`` (N, size, size) uint8 (zeros when ``labels`` is None), ``slice_index`` (N,).
    """
    depth = hu.shape[2]
    needed = sorted({j for z in indices for j in slab_indices(int(z), cfg.context, depth)})
    processed = process_slices(hu, needed, cfg, stats)
    n, size = len(indices), cfg.size
    images = np.empty((n, cfg.channels, size, size), np.float16)
    masks = np.zeros((n, size, size), np.uint8)
    for row, z in enumerate(indices):
        images[row] = np.stack([processed[j] for j in slab_indices(int(z), cfg.context, depth)])
        if labels is not None:
            masks[row] = encode_labels(resize_mask(labels[:, :, z], size), cfg.label_mode)
    return {"image": images, "mask": masks, "slice_index": np.asarray(indices, np.int32)}


def resample_to_grid(volume: np.ndarray, shape: tuple[int, int, int], order: int) -> np.ndarray:
    """Resample (X, Y, Z) to a fixed ``shape``: ``order=1`` for images, ``0`` for masks."""
    factors = [t / s for t, s in zip(shape, volume.shape, strict=True)]
    out = ndimage.zoom(volume, factors, order=order, mode="nearest", grid_mode=True)
    return out[: shape[0], : shape[1], : shape[2]]


def volume_grid(
    hu: np.ndarray, labels: np.ndarray | None, cfg: PreprocessConfig
) -> tuple[np.ndarray, np.ndarray]:
    """One case on the V-Net's fixed grid before normalisation.

    Returns (windowed, filtered HU (X, Y, Z) float32, mask (X, Y, Z) uint8 encoded labels).
    """
    image = resample_to_grid(window(hu, *cfg.window), cfg.volume_size, order=1)
    if cfg.bilateral:
        slices = torch.from_numpy(np.ascontiguousarray(np.moveaxis(image, -1, 0)))
        filtered = bilateral_slices(slices, cfg.bilateral_diameter, cfg.bilateral_sigma_color,
                                    cfg.bilateral_sigma_space)  # fmt: skip
        image = np.ascontiguousarray(np.moveaxis(filtered.numpy(), 0, -1))
    if labels is None:
        return image, np.zeros(cfg.volume_size, np.uint8)
    mask = encode_labels(resample_to_grid(labels, cfg.volume_size, order=0), cfg.label_mode)
    return image, mask


def volume_sample(
    hu: np.ndarray, labels: np.ndarray | None, cfg: PreprocessConfig, stats: IntensityStats
) -> dict[str, np.ndarray]:
    """One case for the V-Net: ``image`` (1, X, Y, Z) float16 z-scored, ``mask`` (X, Y, Z)."""
    image, mask = volume_grid(hu, labels, cfg)
    return {"image": zscore(image, stats.mean, stats.std)[None].astype(np.float16), "mask": mask}
