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

from livseg.config import from_dict
from livseg.data import (
    IntensityStats,
    PreprocessConfig,
    process_slice,
    resample_to_grid,
    slab_indices,
    volume_grid,
    zscore,
)
from livseg.inference.postprocess import keep_liver_components
from livseg.train import is_volumetric, load_checkpoint, memory_format


@dataclass(frozen=True)
class Segmentation:
    """``labels`` (X, Y, Z) uint8 LiTS labels; ``probs`` (classes, X, Y, Z) float16 or None."""

    labels: np.ndarray
    probs: np.ndarray | None


class Segmenter:
    """A loaded checkpoint that segments whole volumes (canonical (X, Y, Z) HU arrays)."""

    def __init__(
        self, model: torch.nn.Module, meta: dict, device: str = "cpu", batch_size: int = 16
    ):
        record = meta["preprocess"]
        self.volumetric = is_volumetric(meta["arch"])
        layout = memory_format(5 if self.volumetric else 4)  # faster convolutions, same numbers
        self.model = model.to(device, memory_format=layout).eval()
        self.meta = meta
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.cfg = from_dict(PreprocessConfig, record["config"])
        self.stats = IntensityStats(**record["stats"])
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
        inputs = inputs.contiguous(memory_format=memory_format(inputs.ndim))
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
