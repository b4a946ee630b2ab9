"""Version folders and their cards: ids, listing, the card written last, input checks.

The files of ``train.checkpoint`` (``MODEL_FILE``, ``META_FILE``) without ``train_state.pt`` are
spelled out here so the registry and its CLI load without torch (a test keeps them equal).
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
from datetime import datetime, timezone
from typing import Any

from livseg.errors import UsageError
from livseg.io import storage, write_bytes_if

CHECKPOINT_FILES = ("model.pt", "meta.json")
CARD_FILE, CLAIM_FILE, CURRENT_FILE = "card.json", "claim.json", "current.json"
DEFAULT_METRIC = "val_score"  # mean validation liver and tumour Dice (train.validation_score)
ATTEMPTS = 100  # conditional-write retries before giving up

_VERSION = re.compile(r"v(\d{4,})")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def claim_version(root: str, name: str, checkpoint: str) -> str:
    """Reserve the next free id by creating its ``claim.json`` only if absent."""
    taken = listing(root, name)
    number = max((int(_VERSION.fullmatch(v)[1]) for v in taken), default=0) + 1
    claim = {"source": checkpoint, "claimed": now(), "host": socket.gethostname(),
             "pid": os.getpid()}  # fmt: skip
    for _ in range(ATTEMPTS):
        version = f"v{number:04d}"
        uri = storage.join(root, name, version, CLAIM_FILE)
        if write_bytes_if(uri, dumps(claim).encode(), None):
            return version
        number += 1  # taken by a concurrent register
    raise RuntimeError(f"{storage.join(root, name)}: no free version id after {ATTEMPTS} tries")


def listing(root: str, name: str) -> dict[str, set[str]]:
    """``{version: names of its files}`` for every claimed version, in version order."""
    folder = storage.join(root, name)
    try:
        files = storage.list_files(folder)
    except FileNotFoundError:
        return {}
    prefix = ("s3://" if storage.is_s3(folder) else "") + storage.filesystem(folder)[1] + "/"
    found: dict[str, set[str]] = {}
    for uri, _ in files:
        parts = uri[len(prefix) :].split("/")
        if uri.startswith(prefix) and len(parts) == 2 and _VERSION.fullmatch(parts[0]):
            found.setdefault(parts[0], set()).add(parts[1])
    return dict(sorted(found.items(), key=lambda item: int(item[0][1:])))


def read_card(root: str, name: str, version: str) -> dict[str, Any]:
    """The card of a complete version; ``UsageError`` listing the known ones otherwise."""
    uri = storage.join(root, name, version, CARD_FILE)
    if not storage.exists(uri):
        known = [v for v, files in listing(root, name).items() if CARD_FILE in files]
        raise UsageError(
            f"{name}: no version {version} under {root}; known versions: "
            f"{', '.join(known) or 'none'}"
        )
    return loads(storage.read_bytes(uri), uri)


def build_card(
    name: str,
    version: str,
    checkpoint: str,
    meta: dict[str, Any],
    metric: str,
    value: float,
    parent: dict | None,
    test_metrics: dict | None,
) -> dict[str, Any]:
    """What a version is, what it was trained and validated on, and how good it is."""
    train = meta.get("train") or {}
    return {
        "name": name,
        "version": version,
        "arch": meta.get("arch"),
        # A cascade bundle (livseg.inference.cascade): its tumour stage's arch and sources.
        "cascade": meta.get("cascade"),
        "in_channels": meta.get("in_channels"),
        "classes": meta.get("classes"),
        "label_map": meta.get("label_map"),
        "loss": {k: train.get(k) for k in ("dice", "focal", "gamma")},
        "data": train.get("data"),
        "preprocess": meta.get("preprocess"),
        "metrics": meta.get("metrics"),  # the best epoch's metrics as training reported them
        "validation": meta.get("validation"),  # what `metrics` were scored on
        "test_metrics": test_metrics,  # an evaluation's summary on held-out cases, if one ran
        "metric": metric,
        "value": value,
        "created": now(),
        "trained": meta.get("created"),
        "parent": parent or {},
        "source": checkpoint,
        "livseg_version": meta.get("livseg_version"),
    }


def checkpoint_meta(checkpoint: str) -> dict[str, Any]:
    """``meta.json`` of a checkpoint folder, refusing folders that are not checkpoints."""
    for file in CHECKPOINT_FILES:
        if not storage.exists(storage.join(checkpoint, file)):
            raise UsageError(f"{checkpoint}: not a livseg checkpoint (no {file})")
    meta_uri = storage.join(checkpoint, CHECKPOINT_FILES[1])
    meta = loads(storage.read_bytes(meta_uri), meta_uri)
    if not isinstance(meta, dict):
        raise UsageError(f"{meta_uri}: expected a JSON object")
    return meta


def checkpoint_files(meta: dict[str, Any], checkpoint: str) -> list[str]:
    """The files a version copies: the checkpoint's, plus a cascade bundle's tumour stage
    (``livseg.inference.cascade``: always in ``tumour/``), each checked to exist."""
    cascade = meta.get("cascade")
    if cascade is not None and (not isinstance(cascade, dict) or cascade.get("tumour") != "tumour"):
        raise UsageError(f"{checkpoint}: meta.json 'cascade' must name the stage folder 'tumour'")
    stage = [f"tumour/{f}" for f in CHECKPOINT_FILES] if cascade else []
    for file in stage:
        if not storage.exists(storage.join(checkpoint, file)):
            raise UsageError(f"{checkpoint}: an incomplete cascade bundle (no {file})")
    return [*CHECKPOINT_FILES, *stage]


def metric_value(meta: dict[str, Any], metric: str, checkpoint: str) -> float:
    """The finite number ``meta["metrics"][metric]``; ``UsageError`` naming the choices."""
    metrics = meta.get("metrics") or {}
    value = metrics.get(metric)
    usable = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not usable or not math.isfinite(value):
        state = "missing" if value is None else f"{value!r}, not a finite number"
        raise UsageError(
            f"{checkpoint}: metric {metric!r} is {state} in meta.json; available metrics: "
            f"{', '.join(sorted(metrics)) or 'none'}; choose one with metric=/--metric"
        )
    return float(value)


def check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise UsageError(
            f"{name!r}: model name must be letters, digits, '.', '_' or '-' "
            f"(it becomes a folder name), e.g. livseg"
        )


def normalise_version(version: str) -> str:
    """``"v0003"``, ``"v3"`` and ``"3"`` all name version v0003."""
    match = re.fullmatch(r"v?(\d+)", str(version).strip())
    if not match:
        raise UsageError(f"{version!r}: not a version id; write it like v0003")
    return f"v{int(match[1]):04d}"


def loads(data: bytes, uri: str) -> Any:
    try:
        return json.loads(data)
    except ValueError as exc:
        raise UsageError(f"{uri}: not valid JSON ({exc}); restore it from a backup") from exc


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2) + "\n"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
