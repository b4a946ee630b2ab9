"""``Segmenter``: a CT volume on its own grid → liver/tumour labels on the same grid.

Inference repeats training's preprocessing from the checkpoint's record (window, bilateral
filter, resize, z-score with the training statistics, 2.5-D slabs) with the same torch ops the
shards were made with (``livseg.data.slice_ops``), here on the model's device:

- 2-D models: the volume streams through in chunks of axial slices (memory stays bounded for
  512×512×1000 studies); each chunk is preprocessed on the device, assembled into (2K+1)-slice
  slabs, segmented, and its softmax probabilities resized back to the input's in-plane size
  (bilinear) before the argmax, so the mask has the input's full resolution and only uint8
  labels leave the device (float16 probabilities only when asked);
- 3-D models (V-Net): the whole volume on the fixed training grid; probabilities are resampled
  back to the input grid (trilinear).

Post-processing (on by default, as in most LiTS pipelines): keep liver components of at least
10 % of the largest one (drops spleen/heart false positives without deleting a liver that the
prediction split in two) and remove tumour outside the kept liver; given the voxel spacing, the
checkpoint's lesion rule (``livseg.inference.lesions``) follows.
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
    preprocess_slices,
    resample_to_grid,
    slab_indices,
    volume_grid,
    zscore,
)
from livseg.inference.lesions import LesionRule
from livseg.inference.postprocess import postprocess_labels
from livseg.inference.qa import model_certainty_limit
from livseg.train import is_volumetric, load_checkpoint, memory_format


@dataclass(frozen=True)
class Segmentation:
    """``labels`` (X, Y, Z) uint8 LiTS labels; ``probs`` (classes, X, Y, Z) float16 or None;
    ``certainty``: the mean winning softmax probability over voxels labelled liver or tumour
    (None when there are none), a cheap uncertainty signal for QA."""

    labels: np.ndarray
    probs: np.ndarray | None
    certainty: float | None = None


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
        # Shards made before ``roi_liver_shift`` existed were not shifted: neither is the input
        # of a model trained on them (the key's default is for new shards only).
        self.cfg = from_dict(PreprocessConfig, {"roi_liver_shift": False, **record["config"]})
        self.stats = IntensityStats(**record["stats"])
        # bf16 on GPUs (as in training); CPU inference stays fp32 for exact scores.
        self.bf16 = self.device.type == "cuda"
        self.binary = len(meta["label_map"]) == 2
        # Chosen on the validation split after training (``livseg.evaluate``); none: no change.
        self.lesion_rule = LesionRule(**meta.get("lesions", {}))
        # The review flag's confidence limit calibrated on validation; None: not calibrated.
        self.min_certainty = model_certainty_limit(meta)

    @classmethod
    def from_checkpoint(cls, uri: str, device: str = "cpu", batch_size: int = 16) -> Segmenter:
        model, meta = load_checkpoint(uri, device)
        return cls(model, meta, device, batch_size)

    @torch.no_grad()
    def probabilities(self, inputs: torch.Tensor) -> torch.Tensor:
        """Softmax probabilities (B, classes, …) float32 of model inputs on the model's device."""
        inputs = inputs.to(self.device, torch.float32)
        inputs = inputs.contiguous(memory_format=memory_format(inputs.ndim))
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.model(inputs)
        return torch.softmax(logits.float(), dim=1)

    def _preprocess(self, hu: np.ndarray, low: int, high: int) -> torch.Tensor:
        """Axial slices ``low:high`` of (X, Y, Z) HU → (N, size, size) inputs on the device."""
        chunk = np.ascontiguousarray(np.moveaxis(hu[:, :, low:high], -1, 0), dtype=np.float32)
        cfg = self.cfg
        bilateral = (
            (cfg.bilateral_diameter, cfg.bilateral_sigma_color, cfg.bilateral_sigma_space)
            if cfg.bilateral
            else None
        )
        return preprocess_slices(torch.from_numpy(chunk).to(self.device), cfg.size, cfg.window,
                                 bilateral, self.stats.mean, self.stats.std)  # fmt: skip

    @torch.no_grad()
    def _predict_2d(self, hu: np.ndarray, keep_probs: bool) -> tuple:
        """Labels (X, Y, Z) and optionally probabilities (classes, X, Y, Z), chunk by chunk.

        Each input slice is preprocessed once: a chunk keeps the K processed slices behind it.
        Probabilities are resized to the input's in-plane size and the argmax taken on the
        model's device (bilinear with half-pixel centres, as OpenCV's INTER_LINEAR).
        """
        depth, context = hu.shape[2], self.cfg.context
        labels = np.empty((depth, *hu.shape[:2]), np.uint8)
        classes = len(self.meta["label_map"])
        probs = np.empty((depth, classes, *hu.shape[:2]), np.float16) if keep_probs else None
        cache, cache_low = None, 0  # processed slices cache_low … cache_low + len(cache)
        winning, foreground = 0.0, 0  # sum of the top probability over liver/tumour voxels
        for start in range(0, depth, self.batch_size):
            stop = min(start + self.batch_size, depth)
            low, high = max(start - context, 0), min(stop + context, depth)
            if cache is None:
                cache, cache_low = self._preprocess(hu, low, high), low
            else:
                kept = cache[low - cache_low :]
                if low + len(kept) < high:
                    kept = torch.cat([kept, self._preprocess(hu, low + len(kept), high)])
                cache, cache_low = kept, low
            rows = [slab_indices(z, context, depth) for z in range(start, stop)]
            index = torch.tensor(rows, device=cache.device) - cache_low
            full = F.interpolate(
                self.probabilities(cache[index]), size=hu.shape[:2], mode="bilinear",
                align_corners=False,
            )  # fmt: skip
            top, chosen = full.max(1)
            labels[start:stop] = chosen.to(torch.uint8).cpu().numpy()
            winning += float(top[chosen > 0].sum())
            foreground += int((chosen > 0).sum())
            if probs is not None:
                probs[start:stop] = full.half().cpu().numpy()
        labels = np.ascontiguousarray(np.moveaxis(labels, 0, -1))
        certainty = winning / foreground if foreground else None
        return labels, None if probs is None else np.moveaxis(probs, 0, -1), certainty

    def _predict_3d(self, hu: np.ndarray, keep_probs: bool) -> tuple:
        grid, _ = volume_grid(hu, None, self.cfg)
        x = torch.from_numpy(zscore(grid, self.stats.mean, self.stats.std)[None, None])
        grid_probs = self.probabilities(x)[0].cpu().numpy()
        probs = np.stack([resample_to_grid(p, hu.shape, order=1) for p in grid_probs])
        labels = probs.argmax(0).astype(np.uint8)
        top = probs.max(0)[labels > 0]
        certainty = float(top.mean()) if top.size else None
        return labels, probs.astype(np.float16) if keep_probs else None, certainty

    def segment(
        self,
        hu: np.ndarray,
        *,
        spacing: tuple[float, float, float] | None = None,
        keep_probs: bool = False,
        postprocess: bool = True,
        lesion_rule: LesionRule | None = None,
    ) -> Segmentation:
        """Labels (X, Y, Z) uint8 (LiTS 0/1/2) of a canonical HU volume and, when asked, the
        softmax probabilities (classes, X, Y, Z) float16 (before post-processing). With the
        voxel ``spacing`` (mm) post-processing also applies the checkpoint's lesion rule (or
        ``lesion_rule``)."""
        if hu.ndim != 3 or min(hu.shape) < 1:
            raise ValueError(f"volume of shape {hu.shape}: expected a 3-D (X, Y, Z) array")
        predict = self._predict_3d if self.volumetric else self._predict_2d
        labels, probs, certainty = predict(hu, keep_probs)  # binary: 1 = liver incl. tumour
        if postprocess:
            labels = postprocess_labels(labels, spacing, lesion_rule or self.lesion_rule, hu)
        return Segmentation(labels, probs, certainty)
