"""The cascade's pieces: the liver box, label composition, the bundle on disk and in the registry,
lesion detection restricted to lesions ≥ 10 mm."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from livseg.config import to_dict
from livseg.data import (
    LABEL_MAPS,
    IntensityStats,
    PreprocessConfig,
    liver_box,
    liver_shift,
    roi_arrays,
)
from livseg.errors import UsageError
from livseg.evaluate import detect_lesions
from livseg.inference import (
    Cascade,
    Segmentation,
    Segmenter,
    keep_liver_components,
    load_segmenter,
    write_cascade,
)
from livseg.registry import register, resolve_model
from livseg.train import build_model, save_checkpoint


def meta(cfg: PreprocessConfig) -> dict:
    stats = IntensityStats(mean=60.0, std=40.0, p005=-50.0, p995=200.0, voxels=1000)
    record = {"config": to_dict(cfg), "stats": stats.__dict__, "channels": cfg.channels,
              "label_map": LABEL_MAPS["multiclass"]}  # fmt: skip
    return {"arch": "unet", "in_channels": cfg.channels, "classes": 3,
            "label_map": LABEL_MAPS["multiclass"], "preprocess": record,
            "metrics": {"val_score": 0.5}}  # fmt: skip


def segmenter(roi: bool) -> Segmenter:
    cfg = PreprocessConfig(size=32, context=0, roi=roi, margin=1)
    return Segmenter(build_model("unet", 1, 3, "none"), meta(cfg))


def test_liver_box_is_a_grown_square_clipped_to_the_volume() -> None:
    labels = np.zeros((100, 80, 30), np.uint8)
    labels[20:60, 30:50, 10:20] = 1  # 40 × 20 in-plane
    box = liver_box(labels, margin=0.25, z_margin=3)
    assert box == (slice(10, 70), slice(10, 70), slice(7, 23))  # side 40 + 2 × 10
    edge = np.zeros_like(labels)
    edge[0:40, 60:80, 0:5] = 2  # at the corner: clipped, never negative
    box = liver_box(edge, margin=0.25, z_margin=3)
    assert box == (slice(0, 50), slice(40, 80), slice(0, 8))
    assert liver_box(np.zeros_like(labels), 0.25) is None
    small = np.zeros_like(labels)
    small[50, 40, 15] = 1
    assert liver_box(small, 0.0)[0] == slice(46, 55)  # at least 4 pixels of margin
    with pytest.raises(ValueError, match="margin"):
        liver_box(labels, 1.5)
    hu = np.arange(labels.size, dtype=np.float32).reshape(labels.shape)
    cropped, cropped_labels = roi_arrays(hu, labels, 0.25, 3)
    assert cropped.shape == cropped_labels.shape == (60, 60, 16)
    assert roi_arrays(hu, np.zeros_like(labels), 0.25, 3)[0] is hu  # no liver: whole volume


def test_liver_shift_puts_each_livers_median_at_the_reference() -> None:
    """Two livers of different phases (70 and 130 HU) with a tumour 30 HU darker than each:
    shifted, both livers sit at 100 HU and both tumours at 70 (the tumour leaves the median)."""
    labels = np.zeros((40, 40, 10), np.uint8)
    labels[10:30, 10:30, 2:8] = 1
    labels[14:18, 14:18, 4:6] = 2
    for liver_hu in (70.0, 130.0):
        hu = np.full(labels.shape, -100.0, np.float32)
        hu[labels == 1], hu[labels == 2] = liver_hu, liver_hu - 30
        hu[12, 12, 3] = 400.0  # one bright vessel voxel moves no median
        assert liver_shift(hu, labels == 1) == 100.0 - liver_hu
        cropped, cropped_labels = roi_arrays(hu, labels, 0.25, 1, shift=True)
        assert cropped.dtype == np.float32
        assert np.median(cropped[cropped_labels == 1]) == 100.0
        assert np.all(cropped[cropped_labels == 2] == 70.0)
        assert np.array_equal(roi_arrays(hu, labels, 0.25, 1)[0], cropped - (100.0 - liver_hu))
    assert liver_shift(hu, np.zeros(labels.shape, bool)) == 0.0  # no liver: unchanged
    with pytest.raises(ValueError, match="shape"):
        liver_shift(hu, labels[:, :, :5] == 1)


def test_cascade_fills_stage_one_liver_box_with_stage_two(monkeypatch) -> None:
    liver, tumour = segmenter(roi=False), segmenter(roi=True)
    first = np.zeros((64, 64, 20), np.uint8)
    first[10:40, 20:40, 5:15] = 1
    first[12:16, 22:26, 8:10] = 2  # stage 1's tumour: replaced by stage 2's answer
    first[55:57, 55:57, 1:3] = 1  # a small far blob: post-processing drops it, no box around it
    seen = {}

    def stage_one(hu, *, keep_probs=False, postprocess=True, spacing=None):
        labels = keep_liver_components(first) if postprocess else first.copy()
        return Segmentation(labels, None, 0.9)

    def stage_two(hu, *, keep_probs=False, postprocess=True, spacing=None):
        seen["shape"], seen["postprocess"] = hu.shape, postprocess
        seen["hu"] = hu
        labels = np.zeros(hu.shape, np.uint8)
        labels[2:-2, 2:-2, 2:-2] = 1  # stage 2's liver, a little larger than stage 1's
        labels[4:8, 4:8, 4:8] = 2
        probs = np.stack([labels == 0, labels == 1, labels == 2]).astype(np.float16)
        return Segmentation(labels, probs if keep_probs else None, 0.8)

    monkeypatch.setattr(liver, "segment", stage_one)
    monkeypatch.setattr(tumour, "segment", stage_two)
    hu = np.where(first == 1, 130.0, -50.0).astype(np.float32)  # a bright (late-phase) liver
    out = Cascade(liver, tumour, {"arch": "unet"}).segment(hu, keep_probs=True)
    box = liver_box(keep_liver_components(first), tumour.cfg.roi_margin, tumour.cfg.roi_z_margin)
    # Stage 2 sees its box with the HU shifted by stage 1's liver (median 130 → 100), as its
    # shards were made from the reference liver.
    np.testing.assert_array_equal(seen.pop("hu"), hu[box] - 30.0)
    assert seen == {"shape": tuple(s.stop - s.start for s in box), "postprocess": False}
    expected = np.zeros_like(first)
    expected[box] = stage_two(np.zeros(seen["shape"])).labels
    np.testing.assert_array_equal(out.labels, expected)
    assert out.certainty == 0.8
    np.testing.assert_allclose(out.probs.astype(np.float32).sum(0), 1.0, atol=1e-3)
    np.testing.assert_array_equal(out.probs.argmax(0)[box], expected[box])
    assert (out.probs[0, 56, 56, 2], out.probs[1, 56, 56, 2]) == (1, 0)  # outside: background
    with pytest.raises(UsageError, match="ROI"):
        Cascade(liver, segmenter(roi=False), {})
    with pytest.raises(UsageError, match="whole slices"):
        Cascade(segmenter(roi=True), tumour, {})


def test_cascade_drops_stage_two_components_stage_one_did_not_call_liver(monkeypatch) -> None:
    liver, tumour = segmenter(roi=False), segmenter(roi=True)
    first = np.zeros((64, 64, 20), np.uint8)
    first[10:40, 10:40, 4:16] = 1

    def stage_one(hu, *, keep_probs=False, postprocess=True, spacing=None):
        return Segmentation(first.copy(), None, 0.9)

    def stage_two(hu, *, keep_probs=False, postprocess=True, spacing=None):
        labels = np.zeros(hu.shape, np.uint8)
        labels[6:-6, 6:-6, 4:-4] = 1  # the liver, inside stage 1's
        labels[8:12, 8:12, 6:9] = 2
        labels[:4] = 1  # a slab of the box outside stage 1's liver, half the liver's size
        return Segmentation(labels, None, 0.8)

    monkeypatch.setattr(liver, "segment", stage_one)
    monkeypatch.setattr(tumour, "segment", stage_two)
    hu = np.zeros(first.shape, np.float32)
    cascade = Cascade(liver, tumour, {"arch": "unet"})
    box = liver_box(first, tumour.cfg.roi_margin, tumour.cfg.roi_z_margin)
    organ = (slice(box[0].start, box[0].start + 4), box[1], box[2])
    raw = cascade.segment(hu, postprocess=False).labels
    assert (raw[organ] == 1).all()  # without post-processing: stage 2 as it came
    out = cascade.segment(hu).labels
    assert (out[organ] == 0).all()  # (large enough for keep_liver_components to keep it)
    assert np.count_nonzero(raw != out) == raw[organ].size and out.max() == 2


def test_a_tumour_stage_from_shards_without_the_shift_key_sees_unshifted_hu(monkeypatch) -> None:
    """A ROI checkpoint whose preprocess.json predates ``roi_liver_shift`` was trained on
    unshifted HU: its input stays unshifted (``PreprocessConfig`` would default the key on)."""
    liver, tumour = segmenter(roi=False), segmenter(roi=True)
    old = meta(tumour.cfg)
    del old["preprocess"]["config"]["roi_liver_shift"]
    tumour = Segmenter(tumour.model, old)
    assert not tumour.cfg.roi_liver_shift and segmenter(roi=True).cfg.roi_liver_shift
    first = np.zeros((48, 48, 12), np.uint8)
    first[10:30, 10:30, 3:9] = 1
    seen = {}
    monkeypatch.setattr(liver, "segment", lambda hu, **kw: Segmentation(first.copy(), None, 0.9))

    def stage_two(hu, **kw):
        seen["hu"] = hu
        return Segmentation(np.zeros(hu.shape, np.uint8), None, 0.8)

    monkeypatch.setattr(tumour, "segment", stage_two)
    hu = np.where(first == 1, 130.0, -50.0).astype(np.float32)
    Cascade(liver, tumour, {"arch": "unet"}).segment(hu, postprocess=False)
    box = liver_box(first, tumour.cfg.roi_margin, tumour.cfg.roi_z_margin)
    np.testing.assert_array_equal(seen["hu"], hu[box])


def test_bundle_loads_as_a_cascade_and_registers_with_both_stages(tmp_path) -> None:
    liver, tumour = segmenter(roi=False), segmenter(roi=True)
    save_checkpoint(tmp_path / "liver", liver.model, liver.meta)
    save_checkpoint(tmp_path / "tumour", tumour.model, tumour.meta)
    with pytest.raises(UsageError, match="--roi"):
        write_cascade(str(tmp_path / "tumour"), str(tmp_path / "liver"), str(tmp_path / "bad"))
    with pytest.raises(UsageError, match="bundle it"):  # a tumour stage alone sees no box
        load_segmenter(str(tmp_path / "tumour"))
    unmeasured = write_cascade(str(tmp_path / "liver"), str(tmp_path / "tumour"),
                               str(tmp_path / "unmeasured"))  # fmt: skip
    with pytest.raises(UsageError, match="val_score"):  # never stage 1's numbers for it
        register(str(tmp_path / "models"), "m", unmeasured)
    validation = {"data": "x", "split": "val", "case_ids": [1], "grid": "original"}
    bundle = write_cascade(str(tmp_path / "liver"), str(tmp_path / "tumour"),
                           str(tmp_path / "bundle"), {"val_score": 0.7}, validation)  # fmt: skip
    assert isinstance(load_segmenter(str(tmp_path / "liver")), Segmenter)
    loaded = load_segmenter(bundle)
    assert isinstance(loaded, Cascade) and loaded.tumour.cfg.roi and not loaded.liver.cfg.roi
    assert loaded.meta["validation"]["grid"] == "original"  # never compared with shard grids
    done = register(str(tmp_path / "models"), "m", bundle)
    card = json.loads((Path(done["uri"]) / "card.json").read_text())
    assert card["cascade"]["tumour_arch"] == "unet" and len(card["tumour_model_sha256"]) == 64
    served = load_segmenter(resolve_model(str(tmp_path / "models"), "m"))
    assert isinstance(served, Cascade)
    for a, b in (
        (served.tumour.model, loaded.tumour.model),
        (served.liver.model, loaded.liver.model),
    ):
        for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
            assert (x == y).all()
    hu = np.full((40, 40, 12), -100.0, np.float32)
    assert served.segment(hu, spacing=(1.0, 1.0, 2.0)).labels.shape == hu.shape


def test_detection_of_lesions_of_at_least_a_size() -> None:
    ref = np.zeros((40, 40, 40), bool)
    pred = np.zeros_like(ref)
    ref[2:12, 2:12, 2:12] = True  # 1000 voxels, found
    pred[2:12, 2:12, 3:12] = True
    ref[20:30, 20:30, 20:30] = True  # 1000 voxels, missed
    ref[35:37, 35:37, 35:37] = True  # 8 voxels, missed: below the size
    pred[2:4, 30:32, 30:32] = True  # small false positive: below the size
    pred[30:40, 2:12, 25:35] = True  # large false positive
    assert detect_lesions(pred, ref) == detect_lesions(pred, ref, min_voxels=0)
    every = detect_lesions(pred, ref)
    assert (every["tp"], every["fp"], every["fn"]) == (1, 2, 2)
    large = detect_lesions(pred, ref, min_voxels=500)
    assert (large["tp"], large["fp"], large["fn"]) == (1, 1, 1)
