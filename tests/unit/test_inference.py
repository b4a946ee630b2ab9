"""Segmenter: training's preprocessing replayed slab by slab, labels on the input grid."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from livseg.config import to_dict
from livseg.data import LABEL_MAPS, IntensityStats, PreprocessConfig, process_slice, slab_indices
from livseg.inference import Segmenter, keep_confirmed_components, keep_liver_components
from livseg.train import build_model


def _meta(arch: str, cfg: PreprocessConfig) -> dict:
    stats = IntensityStats(mean=60.0, std=40.0, p005=-50.0, p995=200.0, voxels=1000)
    record = {"config": to_dict(cfg), "stats": stats.__dict__, "channels": cfg.channels,
              "label_map": LABEL_MAPS["multiclass"]}  # fmt: skip
    return {"arch": arch, "in_channels": 1 if arch == "vnet" else cfg.channels, "classes": 3,
            "label_map": LABEL_MAPS["multiclass"], "preprocess": record}  # fmt: skip


def test_keep_liver_components_drops_small_far_blobs_and_their_tumour():
    labels = np.zeros((40, 40, 20), np.uint8)
    labels[5:25, 5:25, 2:18] = 1  # liver
    labels[10:14, 10:14, 8:12] = 2  # tumour inside
    labels[32:35, 32:35, 5:8] = 2  # small far blob (27 voxels) labelled tumour
    labels[30:40, 0:10, 0:10] = 1  # second big component (1000 voxels ≥ 10 % of 6400)
    out = keep_liver_components(labels)
    assert (out[32:35, 32:35, 5:8] == 0).all()
    assert (out[30:40, 0:10, 0:10] == 1).all()
    np.testing.assert_array_equal(out[:30], labels[:30])
    empty = np.zeros((5, 5, 5), np.uint8)
    assert keep_liver_components(empty) is empty


def test_keep_confirmed_components_drops_what_stage_one_did_not_call_liver():
    labels = np.zeros((40, 40, 20), np.uint8)
    labels[5:25, 5:25, 2:18] = 1  # liver, most of it confirmed
    labels[10:14, 10:14, 8:12] = 2
    labels[30:40, 28:40, 0:10] = 1  # a big organ of liver-like HU: stage 1 saw no liver there
    labels[33:36, 33:36, 3:6] = 2  # with a "lesion" in it
    labels[0:3, 30:33, 0:3] = 1  # a small piece, a third of it confirmed
    confirm = np.zeros(labels.shape, bool)
    confirm[8:25, 5:25, 2:18] = True  # stage 1's coarser liver: 85 % of the liver
    confirm[0:3, 30:33, 0:1] = True
    confirm[38:40, 38:40, 0:1] = True  # 4 of the organ's 1,200 voxels
    out = keep_confirmed_components(labels, confirm, share=0.1)
    assert (out[30:40, 28:40, 0:10] == 0).all()  # the organ and its lesion go
    np.testing.assert_array_equal(out[:30], labels[:30])  # liver, tumour, the small piece stay
    assert keep_confirmed_components(labels, confirm, share=0.5)[0:3, 30:33, 0:3].max() == 0
    assert keep_confirmed_components(labels, confirm, share=0.0) is labels
    assert keep_confirmed_components(labels, np.ones(labels.shape, bool)) is labels
    empty = np.zeros(labels.shape, np.uint8)
    assert keep_confirmed_components(empty, confirm) is empty
    with pytest.raises(ValueError, match="shape"):
        keep_confirmed_components(labels, confirm[:, :, :5])
    with pytest.raises(ValueError, match="bool"):
        keep_confirmed_components(labels, labels)  # labels, not a mask: tumour would count twice
    with pytest.raises(ValueError, match="share"):
        keep_confirmed_components(labels, confirm, share=1.5)


@torch.no_grad()
def test_2d_segmenter_matches_a_slice_by_slice_reference():
    torch.manual_seed(0)
    cfg = PreprocessConfig(size=32, context=1)
    meta = _meta("unet", cfg)
    model = build_model("unet", cfg.channels, 3, "none").eval()
    seg = Segmenter(model, meta, batch_size=3)  # batches cut through slabs on purpose
    rng = np.random.default_rng(0)
    hu = rng.normal(50, 80, (40, 50, 7)).astype(np.float32)
    out = seg.segment(hu, keep_probs=True, postprocess=False)
    assert out.labels.shape == hu.shape and out.probs.shape == (3, *hu.shape)
    np.testing.assert_allclose(out.probs.astype(np.float32).sum(0), 1.0, atol=5e-3)
    for z in range(hu.shape[2]):
        slab = np.stack([process_slice(hu[:, :, j], seg.cfg, seg.stats)
                         for j in slab_indices(z, cfg.context, hu.shape[2])])  # fmt: skip
        logits = model(torch.from_numpy(slab[None].astype(np.float16).astype(np.float32)))
        p = torch.softmax(logits, 1)[0].numpy()
        full = np.stack([cv2.resize(c, (50, 40), interpolation=cv2.INTER_LINEAR) for c in p])
        np.testing.assert_allclose(out.probs[:, :, :, z], full, atol=2e-3)
        agree = (out.labels[:, :, z] == full.argmax(0)).mean()
        assert agree > 0.99  # float16 rounding of the inputs may flip near-ties only


def test_3d_segmenter_returns_the_input_grid():
    torch.manual_seed(0)
    cfg = PreprocessConfig(size=32, volume_size=(32, 32, 32))
    seg = Segmenter(build_model("vnet", 1, 3, "none"), _meta("vnet", cfg))
    hu = np.random.default_rng(1).normal(50, 80, (45, 38, 21)).astype(np.float32)
    out = seg.segment(hu, keep_probs=True)
    assert out.labels.shape == hu.shape and out.probs.shape == (3, *hu.shape)
    assert out.labels.max() <= 2


def test_segmenter_rejects_a_non_3d_array():
    cfg = PreprocessConfig(size=32, context=0)
    seg = Segmenter(build_model("unet", 1, 3, "none"), _meta("unet", cfg))
    with pytest.raises(ValueError, match="expected a 3-D"):
        seg.segment(np.zeros((10, 10), np.float32))
