"""The review flag's per-model confidence limit: the rule, where it is recorded and read."""

from __future__ import annotations

import json

import pytest
from test_cascade import meta, segmenter

from livseg.data import PreprocessConfig
from livseg.evaluate import certainty_limit
from livseg.inference import ReviewLimits, Segmenter, load_segmenter, write_cascade
from livseg.serve import ServeSettings
from livseg.train import build_model, read_meta, save_checkpoint, update_meta


def test_the_limit_scales_the_least_certain_validation_case_within_floor_and_default():
    # 4 × the least certain validation case's uncertainty (0.03 here) is flagged.
    assert certainty_limit([0.99, 0.97, 0.995], default=0.94, factor=4) == pytest.approx(0.88)
    assert certainty_limit([0.999, 0.998], default=0.94, factor=4) == 0.94  # never stricter
    # A model unsure of its own validation cases keeps flagging studies.
    assert certainty_limit([0.9, 0.95], default=0.94, factor=4, floor=0.8) == 0.8
    with pytest.raises(ValueError, match="no validation certainty"):
        certainty_limit([], default=0.94)


def test_a_checkpoint_s_limit_reaches_the_segmenter_and_the_review(tmp_path):
    cfg = PreprocessConfig(size=32, context=0)
    plain = Segmenter(build_model("unet", 1, 3, "none"), meta(cfg))
    assert plain.min_certainty is None
    assert ReviewLimits.for_model(plain.min_certainty).min_certainty == 0.94
    save_checkpoint(tmp_path / "m", plain.model, plain.meta)
    update_meta(str(tmp_path / "m"), review={"min_certainty": 0.87, "split": "val"})
    assert read_meta(str(tmp_path / "m"))["arch"] == "unet"  # the rest of meta.json kept
    loaded = load_segmenter(str(tmp_path / "m"))
    assert loaded.min_certainty == 0.87
    assert ReviewLimits.for_model(loaded.min_certainty).min_certainty == 0.87
    # The app's setting wins over the model's; unset, the model's applies.
    assert ServeSettings().review_limits(loaded.min_certainty).min_certainty == 0.87
    assert ServeSettings(min_certainty=0.9).review_limits(0.87).min_certainty == 0.9
    update_meta(str(tmp_path / "m"), review={"min_certainty": 94})  # a hand-edited percent
    with pytest.raises(ValueError, match="min_certainty=94"):
        load_segmenter(str(tmp_path / "m"))


def test_a_cascade_never_takes_its_liver_stage_s_limit(tmp_path):
    liver, tumour = segmenter(roi=False), segmenter(roi=True)
    calibrated = {**liver.meta, "review": {"min_certainty": 0.8}}
    save_checkpoint(tmp_path / "liver", liver.model, calibrated)
    save_checkpoint(tmp_path / "tumour", tumour.model, tumour.meta)
    validation = {"data": "x", "split": "val", "case_ids": [1], "grid": "original"}
    bundle = write_cascade(str(tmp_path / "liver"), str(tmp_path / "tumour"),
                           str(tmp_path / "bundle"), {"val_score": 0.7}, validation)  # fmt: skip
    assert "review" not in json.loads((tmp_path / "bundle" / "meta.json").read_text())
    assert load_segmenter(bundle).min_certainty is None
    assert load_segmenter(str(tmp_path / "liver")).min_certainty == 0.8
