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

import cv2
import numpy as np
import torch
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
    comp, n = ndimage.label(labels >= 1, structure=np.ones((3, 3, 3), bool))
    if n <= 1:
        return labels
    sizes = np.bincount(comp.ravel())[1:]
    keep = np.zeros(n + 1, bool)
    keep[1:] = sizes >= fraction * sizes.max()
    return np.where(keep[comp], labels, 0).astype(np.uint8)


def _resize_probs(probs: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(classes, h, w) → (classes, X, Y) bilinear; cv2 takes (width, height) = (Y, X)."""
    return np.stack(
        [cv2.resize(p, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR) for p in probs]
    )


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
    def _softmax(self, x: np.ndarray) -> np.ndarray:
        inputs = torch.from_numpy(x).to(self.device, torch.float32)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.model(inputs)
        return torch.softmax(logits.float(), dim=1).cpu().numpy()

    def _probs_2d(self, hu: np.ndarray) -> np.ndarray:
        depth = hu.shape[2]
        processed: dict[int, np.ndarray] = {}
        out = np.empty((len(self.meta["label_map"]), *hu.shape), np.float16)
        for start in range(0, depth, self.batch_size):
            zs = range(start, min(start + self.batch_size, depth))
            slabs = []
            for z in zs:
                idx = slab_indices(z, self.cfg.context, depth)
                for j in idx:
                    if j not in processed:
                        processed[j] = process_slice(hu[:, :, j], self.cfg, self.stats)
                slabs.append(np.stack([processed[j] for j in idx]))
            probs = self._softmax(np.stack(slabs))
            for z, p in zip(zs, probs, strict=True):
                out[:, :, :, z] = _resize_probs(p, hu.shape[:2])
            for j in [j for j in processed if j < start + self.batch_size - self.cfg.context]:
                del processed[j]  # slabs only look K slices back: free what is behind
        return out

    def _probs_3d(self, hu: np.ndarray) -> np.ndarray:
        grid, _ = volume_grid(hu, None, self.cfg)
        x = zscore(grid, self.stats.mean, self.stats.std)[None, None]
        probs = self._softmax(x)[0]
        return np.stack([resample_to_grid(p, hu.shape, order=1) for p in probs]).astype(np.float16)

    def probabilities(self, hu: np.ndarray) -> np.ndarray:
        """Softmax probabilities (classes, X, Y, Z) float16 for a canonical HU volume."""
        if hu.ndim != 3 or min(hu.shape) < 1:
            raise ValueError(f"volume of shape {hu.shape}: expected a 3-D (X, Y, Z) array")
        return self._probs_3d(hu) if self.volumetric else self._probs_2d(hu)

    def segment(
        self, hu: np.ndarray, *, keep_probs: bool = False, postprocess: bool = True
    ) -> Segmentation:
        """Labels (X, Y, Z) uint8 (LiTS 0/1/2) and, when asked, the probabilities."""
        probs = self.probabilities(hu)
        labels = probs.argmax(0).astype(np.uint8)  # binary models: 1 = liver incl. tumour
        if postprocess:
            labels = keep_liver_components(labels)
        return Segmentation(labels, probs if keep_probs else None)
