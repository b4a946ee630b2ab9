import json

import pytest

from livseg.config import from_dict, load, parse_overrides, to_dict
from livseg.data import PreprocessConfig


def test_unknown_key_lists_valid_ones():
    with pytest.raises(ValueError, match=r"unknown PreprocessConfig key\(s\) \['sise'\].*'size'"):
        from_dict(PreprocessConfig, {"sise": 128})


def test_overrides_are_coerced_to_field_types(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("size: 128\nbilateral: false\n")
    cfg = load(PreprocessConfig, str(path), ["window=-100,300", "context=1", "bilateral=true"])
    assert cfg.size == 128 and cfg.context == 1 and cfg.bilateral is True
    assert cfg.window == (-100.0, 300.0) and cfg.channels == 3


def test_round_trip_through_json():
    cfg = PreprocessConfig(size=64, volume_size=(32, 32, 16))
    again = from_dict(PreprocessConfig, json.loads(json.dumps(to_dict(cfg))))
    assert again == cfg


@pytest.mark.parametrize(
    "override, message",
    [
        ("size=100", "multiple of 16"),
        ("window=300,-100", "low must be below high"),
        ("label_mode=ternary", "multiclass"),
        ("other_fraction=2", r"within \[0, 1\]"),
        ("split=0.5,0.5,0.5", "summing to 1"),
        ("bilateral=maybe", "expected"),
    ],
)
def test_bad_values_say_what_to_change(override, message):
    with pytest.raises(ValueError, match=message):
        load(PreprocessConfig, None, [override])


def test_override_syntax_error():
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["size"])
