"""``Segmenter``: a CT volume on its own grid → liver/tumour labels on the same grid.

Inference repeats training's preprocessing from the checkpoint's record (window, bilateral
filter, resize, z-score with the training statistics, 2.5-D slabs), so a model sees at
inference exactly what it saw in training:

- 2-D models: every axial slice as a (2K+1)-slice slab, in batches; softmax probabilities are
  resized back to the slice's in-plane size (bilinear) before the argmax, so the mask has the
  input's full resolution rather than upsampled labels;
- 3-D models (V-Net): the whole volume on the fixed training grid; probabilities are resampled
  back to the input grid (trilinear).

Post-processing (on by default, as in most LiTS pipelines): keep liver components of at least
10 % of the largest one (drops spleen/heart false positives without deleting a liver that the
prediction split in two) and remove tumour outside the kept liver.
Labels out are LiTS labels: 0 background, 1 liver, 2 tumour (a binary model gives 0/1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from livseg.checkpoint import load_checkpoint
from livseg.config import PreprocessConfig, from_dict
from livseg.models import is_volumetric
from livseg.preprocess import (
    IntensityStats,
    process_slice,
    resample_to_grid,
    slab_indices,
    volume_grid,
    zscore,
)

MIN_COMPONENT_FRACTION = 0.1  # liver components smaller than this × the largest are dropped


@dataclass(frozen=True)
class Segmentation:
    """``labels`` (X, Y, Z) uint8 LiTS labels; ``probs`` (classes, X, Y, Z) float16 or None."""

    labels: np.ndarray
    probs: np.ndarray | None


def keep_liver_components(
    labels: np.ndarray, fraction: float = MIN_COMPONENT_FRACTION
) -> np.ndarray:
    """Drop liver components (label ≥ 1, 26-connected) below ``fraction`` of the largest and
    tumour outside what is kept. (X, Y, Z) uint8 in and out."""
    liver = labels >= 1
    if not liver.any():
        return labels
    box = _bbox(liver)  # label only inside the liver's box: a fraction of a 512² × Z volume
    comp, n = ndimage.label(liver[box], structure=np.ones((3, 3, 3), bool))
    if n <= 1:
        return labels
    sizes = np.bincount(comp.ravel())[1:]
    keep = np.zeros(n + 1, bool)
    keep[1:] = sizes >= fraction * sizes.max()
    out = labels.copy()
    out[box] = np.where(keep[comp], labels[box], 0)
    return out


def _bbox(mask: np.ndarray) -> tuple[slice, ...]:
    """The smallest box holding every true voxel of a non-empty mask."""
    out = []
    for axis in range(mask.ndim):
        hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        out.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(out)


class Segmenter:
    """A loaded checkpoint that segments whole volumes (canonical (X, Y, Z) HU arrays)."""

    def __init__(
        self, model: torch.nn.Module, meta: dict, device: str = "cpu", batch_size: int = 16
    ):
        record = meta["preprocess"]
        self.model = model.to(device).eval()
        self.meta = meta
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.cfg = from_dict(PreprocessConfig, record["config"])
        self.stats = IntensityStats(**record["stats"])
        self.volumetric = is_volumetric(meta["arch"])
        # bf16 on GPUs (as in training); CPU inference stays fp32 for exact scores.
        self.bf16 = self.device.type == "cuda"
        self.binary = len(meta["label_map"]) == 2

    @classmethod
    def from_checkpoint(cls, uri: str, device: str = "cpu", batch_size: int = 16) -> Segmenter:
        model, meta = load_checkpoint(uri, device)
        return cls(model, meta, device, batch_size)

    @torch.no_grad()
    def _softmax(self, x: np.ndarray) -> torch.Tensor:
        """Softmax probabilities (B, classes, …) float32 on the model's device."""
        inputs = torch.from_numpy(x).to(self.device, torch.float32)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.model(inputs)
        return torch.softmax(logits.float(), dim=1)

    @torch.no_grad()
    def _predict_2d(self, hu: np.ndarray, keep_probs: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Labels (X, Y, Z) and optionally probabilities (classes, X, Y, Z), slab by slab.

        Probabilities are resized to the input's in-plane size and the argmax taken on the
        model's device (bilinear with half-pixel centres, as OpenCV's INTER_LINEAR), so only
        uint8 labels come back unless the float16 maps are asked for.
        """
        depth = hu.shape[2]
        processed: dict[int, np.ndarray] = {}
        labels = np.empty((depth, *hu.shape[:2]), np.uint8)
        classes = len(self.meta["label_map"])
        probs = np.empty((depth, classes, *hu.shape[:2]), np.float16) if keep_probs else None
        for start in range(0, depth, self.batch_size):
            stop = min(start + self.batch_size, depth)
            slabs = []
            for z in range(start, stop):
                idx = slab_indices(z, self.cfg.context, depth)
                for j in idx:
                    if j not in processed:
                        processed[j] = process_slice(hu[:, :, j], self.cfg, self.stats)
                slabs.append(np.stack([processed[j] for j in idx]))
            full = F.interpolate(
                self._softmax(np.stack(slabs)), size=hu.shape[:2], mode="bilinear",
                align_corners=False,
            )  # fmt: skip
            labels[start:stop] = full.argmax(1).to(torch.uint8).cpu().numpy()
            if probs is not None:
                probs[start:stop] = full.half().cpu().numpy()
            for j in [j for j in processed if j < stop - self.cfg.context]:
                del processed[j]  # slabs only look K slices back: free what is behind
        labels = np.ascontiguousarray(np.moveaxis(labels, 0, -1))
        return labels, None if probs is None else np.moveaxis(probs, 0, -1)

    def _predict_3d(self, hu: np.ndarray, keep_probs: bool) -> tuple[np.ndarray, np.ndarray | None]:
        grid, _ = volume_grid(hu, None, self.cfg)
        x = zscore(grid, self.stats.mean, self.stats.std)[None, None]
        grid_probs = self._softmax(x)[0].cpu().numpy()
        probs = np.stack([resample_to_grid(p, hu.shape, order=1) for p in grid_probs])
        labels = probs.argmax(0).astype(np.uint8)
        return labels, probs.astype(np.float16) if keep_probs else None

    def segment(
        self, hu: np.ndarray, *, keep_probs: bool = False, postprocess: bool = True
    ) -> Segmentation:
        """Labels (X, Y, Z) uint8 (LiTS 0/1/2) of a canonical HU volume and, when asked, the
        softmax probabilities (classes, X, Y, Z) float16 (before post-processing)."""
        if hu.ndim != 3 or min(hu.shape) < 1:
            raise ValueError(f"volume of shape {hu.shape}: expected a 3-D (X, Y, Z) array")
        predict = self._predict_3d if self.volumetric else self._predict_2d
        labels, probs = predict(hu, keep_probs)  # binary models: 1 = liver incl. tumour
        if postprocess:
            labels = keep_liver_components(labels)
        return Segmentation(labels, probs)
