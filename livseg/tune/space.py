"""The sweep's search space as data: ``dice=0:1``, ``lr=1e-4:1e-3:log``, ``gamma=1|2|3``.

Parsed from ``--space`` text or a YAML/JSON file into ``Dimension``s that know their Ray Tune
domain; each key is checked against what a training run can take.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import yaml

from livseg.config import from_dict
from livseg.errors import UsageError
from livseg.train import TrainConfig

SEARCHABLE = ("dice", "gamma", "lr", "weight_decay")  # focal follows dice: focal = 1 - dice
KINDS = ("uniform", "loguniform", "choice")


@dataclass(frozen=True)
class Dimension:
    """One searched TrainConfig key: ``uniform``/``loguniform`` over (low, high), or a choice."""

    kind: str
    values: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UsageError(f"search kind {self.kind!r}: use one of {KINDS}")
        if self.kind != "choice" and (len(self.values) != 2 or self.values[0] >= self.values[1]):
            raise UsageError(f"{self.kind} range {self.values}: write low:high with low < high")
        if self.kind == "loguniform" and self.values[0] <= 0:
            raise UsageError(f"loguniform range {self.values}: low must be positive")
        if not self.values:
            raise UsageError("a choice needs at least one value")

    def domain(self):
        """The Ray Tune sampling domain."""
        from ray import tune

        if self.kind == "choice":
            return tune.choice(list(self.values))
        return getattr(tune, self.kind)(*self.values)


# The study fixed dice 0.8 / focal 0.2, gamma 2, Adam 1e-4; the sweep searches around them.
DEFAULT_SPACE = {
    "dice": Dimension("uniform", (0.0, 1.0)),
    "gamma": Dimension("choice", (1.0, 2.0, 3.0)),
    "lr": Dimension("loguniform", (3e-5, 3e-4)),
}


def parse_dimension(key: str, spec: Any) -> Dimension:
    """``"0.5:1"`` uniform, ``"1e-4:1e-3:log"`` log-uniform, ``"1|2|3"`` or a list a choice,
    a single number fixed; checked against what ``key`` allows."""
    if key == "focal":
        raise UsageError("focal follows dice (focal = 1 - dice): search dice instead")
    if key not in SEARCHABLE:
        raise UsageError(f"cannot search {key!r}; searchable keys: {', '.join(SEARCHABLE)}")
    kind, items = "choice", spec if isinstance(spec, (list, tuple)) else [spec]
    if isinstance(spec, str) and "|" in spec:
        items = spec.split("|")
    elif isinstance(spec, str) and ":" in spec:
        items = spec.split(":")
        kind = "uniform"
        if len(items) == 3 and items[2] == "log":
            kind, items = "loguniform", items[:2]
    usage = f"search space {key}={spec!r}: write low:high, low:high:log, a|b|c or one number"
    try:
        values = tuple(float(v) for v in items)
    except (TypeError, ValueError) as exc:
        raise UsageError(usage) from exc
    if not values or (kind != "choice" and len(values) != 2):
        raise UsageError(usage)
    dim = Dimension(kind, values)
    bounds = {"dice": (0.0, 1.0), "gamma": (0.0, math.inf), "lr": (1e-12, math.inf)}
    low, high = bounds.get(key, (0.0, math.inf))
    if not all(low <= v <= high for v in dim.values):
        raise UsageError(f"search space {key}={spec!r}: values must lie within [{low}, {high}]")
    return dim


def parse_space(text: str = "", path: str | None = None) -> dict[str, Dimension]:
    """The default space updated by a YAML/JSON file (``key: spec``) and then by ``--space``
    text (``dice=0.5:1,gamma=1|2,lr=1e-4:1e-3:log``); each names whole dimensions."""
    space = dict(DEFAULT_SPACE)
    if path:
        with open(path, encoding="utf-8") as handle:
            loaded = yaml.safe_load(handle) or {}
        if not isinstance(loaded, dict):
            raise UsageError(f"{path}: expected a mapping such as 'dice: 0.5:1'")
        space.update({str(k): parse_dimension(str(k), v) for k, v in loaded.items()})
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, spec = part.partition("=")
        if not sep:
            raise UsageError(f"--space {part!r}: write key=spec, e.g. dice=0.5:1")
        space[key.strip()] = parse_dimension(key.strip(), spec.strip())
    return space


def trial_config(config: dict[str, Any], trial_id: str) -> TrainConfig:
    """The TrainConfig of one trial: base settings, sampled values, focal = 1 - dice."""
    values = {k: v for k, v in config.items() if k != "train"}
    if "dice" in values:
        values["focal"] = round(1.0 - values["dice"], 12)
    return from_dict(TrainConfig, {**config["train"], **values, "name": trial_id})
