"""Loading frozen configuration dataclasses from YAML/JSON plus ``key=value`` overrides.

Each stage owns its config class (``data.PreprocessConfig``, ``train.TrainConfig``,
``tune.SweepConfig``); this module turns files and flags into them. Unknown keys are a
``UsageError`` that lists the valid ones, so a typo never passes silently.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, TypeVar

import yaml

from livseg.errors import UsageError

T = TypeVar("T")


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
        raise UsageError(f"{key}={value!r}: expected {hint}") from exc
    return value


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build config ``cls`` from a mapping; unknown keys raise ``UsageError`` naming valid ones."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise UsageError(f"unknown {cls.__name__} key(s) {unknown}; valid keys: {sorted(names)}")
    return cls(**{k: _coerce(v, hints[k], k) for k, v in data.items()})


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """Turn ``["size=128", "window=-100,300"]`` into a dict of YAML-parsed values."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"override {pair!r}: write key=value")
        out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
    return out


def load(
    cls: type[T],
    path: str | None = None,
    overrides: list[str] | None = None,
    defaults: dict[str, Any] | None = None,
) -> T:
    """Build ``cls`` from, in rising priority: ``defaults`` (a job's own), a YAML/JSON file,
    then ``key=value`` overrides."""
    data: dict[str, Any] = dict(defaults or {})
    if path:
        try:
            with open(path, encoding="utf-8") as handle:
                loaded = yaml.safe_load(handle) or {}
        except OSError as exc:
            raise UsageError(f"--config {path}: cannot read it ({exc})") from exc
        if not isinstance(loaded, dict):
            raise UsageError(f"{path}: expected a mapping of config keys")
        data.update(loaded)
    data.update(parse_overrides(overrides or []))
    return from_dict(cls, data)


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))
