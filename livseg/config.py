"""Frozen configuration dataclasses, loaded from YAML/JSON plus ``key=value`` overrides.

Unknown keys are a ``ValueError`` that lists the valid ones, so a typo never passes silently.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


@dataclass(frozen=True)
class PreprocessConfig:
    """Everything that decides what a shard holds; stored in ``preprocess.json``."""

    size: int = 256  # in-plane output size (pixels)
    context: int = 2  # K neighbouring slices on each side: C = 2K + 1 channels
    window: tuple[float, float] = (-200.0, 250.0)  # HU clip window (abdominal soft tissue)
    bilateral: bool = True  # the study's bilateral filter against scanner noise
    bilateral_diameter: int = 5  # OpenCV neighbourhood diameter (pixels)
    bilateral_sigma_color: float = 25.0  # range kernel σ (HU)
    bilateral_sigma_space: float = 3.0  # spatial kernel σ (pixels)
    label_mode: str = "multiclass"  # "multiclass" 0/1/2 or the study's "binary" liver+tumour
    margin: int = 4  # slices kept above and below the liver
    other_fraction: float = 0.1  # fraction of the other (liver-free) training slices kept;
    # validation and test cases keep every slice
    volume_size: tuple[int, int, int] = (64, 64, 64)  # fixed 3-D grid for the V-Net (X, Y, Z)
    split: tuple[float, float, float] = (0.7, 0.2, 0.1)  # train / test / val, as in the study
    seed: int = 0
    shard_mb: int = 128  # target Parquet file size: a few big files per split feed a GPU

    def __post_init__(self) -> None:
        if self.size < 16 or self.size % 16:
            raise ValueError(f"size={self.size}: use a multiple of 16, at least 16 (e.g. 256)")
        if self.context < 0:
            raise ValueError(f"context={self.context}: must be 0 or more neighbouring slices")
        if not self.window[0] < self.window[1]:
            raise ValueError(f"window={self.window}: low must be below high (HU)")
        if self.label_mode not in ("multiclass", "binary"):
            raise ValueError(f"label_mode={self.label_mode!r}: use 'multiclass' or 'binary'")
        if not 0.0 <= self.other_fraction <= 1.0:
            raise ValueError(f"other_fraction={self.other_fraction}: must be within [0, 1]")
        if any(v < 16 or v % 16 for v in self.volume_size):
            raise ValueError(f"volume_size={self.volume_size}: each side a multiple of 16")
        if len(self.split) != 3 or min(self.split) < 0 or abs(sum(self.split) - 1) > 1e-6:
            raise ValueError(f"split={self.split}: three non-negative fractions summing to 1")
        if self.bilateral_diameter < 1 or self.shard_mb < 1 or self.margin < 0:
            raise ValueError("bilateral_diameter and shard_mb must be ≥ 1, margin ≥ 0")

    @property
    def channels(self) -> int:
        return 2 * self.context + 1


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Convert a parsed YAML/CLI value to the field's declared type."""
    origin = typing.get_origin(hint)
    try:
        if origin is tuple:
            items = value.split(",") if isinstance(value, str) else list(value)
            args = typing.get_args(hint)
            return tuple(_coerce(v, args[0], key) for v in items)
        if origin in (typing.Union, types.UnionType):
            if value is None or value in ("none", "None", "null"):
                return None
            return _coerce(value, typing.get_args(hint)[0], key)
        if hint is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return value.lower() in ("true", "1", "yes")
            return bool(value)
        if hint in (int, float, str):
            return hint(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{key}={value!r}: expected {hint}") from exc
    return value


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build config ``cls`` from a mapping; unknown keys raise ``ValueError`` naming valid ones."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} key(s) {unknown}; valid keys: {sorted(names)}")
    return cls(**{k: _coerce(v, hints[k], k) for k, v in data.items()})


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """Turn ``["size=128", "window=-100,300"]`` into a dict of YAML-parsed values."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"override {pair!r}: write key=value")
        out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
    return out


def load(cls: type[T], path: str | None = None, overrides: list[str] | None = None) -> T:
    """Load ``cls`` from a YAML/JSON file (optional) and apply ``key=value`` overrides."""
    data: dict[str, Any] = {}
    if path:
        with open(path, encoding="utf-8") as handle:
            loaded = yaml.safe_load(handle) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping of config keys")
        data.update(loaded)
    data.update(parse_overrides(overrides or []))
    return from_dict(cls, data)


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))
