"""Model registry: numbered copies of checkpoints and the pointer to the one Serve loads.

Layout under ROOT (a local folder or an ``s3://`` prefix)::

    ROOT/NAME/v0001/claim.json     reserves the id (created only if absent)
    ROOT/NAME/v0001/model.pt       copy of the checkpoint (training state left out)
    ROOT/NAME/v0001/meta.json
    ROOT/NAME/v0001/card.json      what the model is and how good it is; written last
    ROOT/NAME/current.json         the version Serve loads and the earlier current ones

A version is complete once its ``card.json`` exists; versions are never rewritten. Concurrent
writers are settled by conditional writes (:func:`livseg.storage.write_bytes_if`): ids by
create-if-absent of ``claim.json``, ``current.json`` by compare-and-swap, with the promotion
decision re-made against the fresh pointer after every lost race.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
import socket
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from livseg import storage

# The files of livseg.checkpoint (MODEL_FILE, META_FILE) without train_state.pt; spelled out so
# the registry and its CLI load without torch (a test keeps them equal).
CHECKPOINT_FILES = ("model.pt", "meta.json")
CARD_FILE, CLAIM_FILE, CURRENT_FILE = "card.json", "claim.json", "current.json"
DEFAULT_METRIC = "val_score"  # mean validation liver and tumour Dice (livseg.train._score)

_VERSION = re.compile(r"v(\d{4,})")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_ATTEMPTS = 100

Pointer = dict[str, Any]


def register(
    root: str,
    name: str,
    checkpoint: str,
    *,
    metric: str = DEFAULT_METRIC,
    force: bool = False,
    parent: dict | None = None,
    test_metrics: dict | None = None,
) -> dict[str, Any]:
    """Store ``checkpoint`` as the next version of ``name``; make it current if it is better.

    Better means a strictly greater ``meta["metrics"][metric]`` than current's value on the same
    metric; the first version and ``force=True`` are always promoted. Returns ``{"version",
    "promoted", "current", "reason", "uri", "metric", "value"}``.
    """
    root, checkpoint = _absolute(root), _absolute(checkpoint)
    _check_name(name)
    for label, given in (("parent", parent), ("test_metrics", test_metrics)):
        if given is not None and not isinstance(given, dict):
            raise ValueError(f"{label} must be a dict, got {type(given).__name__}")
    meta = _checkpoint_meta(checkpoint)
    value = _metric_value(meta, metric, checkpoint)
    version = _claim_version(root, name, checkpoint)
    folder = storage.join(root, name, version)
    files = {file: storage.read_bytes(storage.join(checkpoint, file)) for file in CHECKPOINT_FILES}
    for file, data in files.items():
        storage.write_bytes(storage.join(folder, file), data)
    card = _card(name, version, checkpoint, meta, metric, value, parent, test_metrics)
    card["model_sha256"] = hashlib.sha256(files[CHECKPOINT_FILES[0]]).hexdigest()
    storage.write_text(storage.join(folder, CARD_FILE), _dumps(card))

    def decide(pointer: Pointer | None) -> tuple[Pointer | None, str]:
        return _promotion(name, pointer, version, metric, value, force)

    pointer, promoted, reason = _swap_current(root, name, decide)
    return {
        "version": version,
        "promoted": promoted,
        "current": pointer["version"] if pointer else None,
        "reason": reason,
        "uri": folder,
        "metric": metric,
        "value": value,
    }


def list_versions(root: str, name: str) -> list[dict[str, Any]]:
    """The cards of every complete version, oldest first, each with ``"current": bool``."""
    root = _absolute(root)
    _check_name(name)
    pointer = _read_pointer(root, name)
    current_version = pointer["version"] if pointer else None
    cards = []
    for version, files in _listing(root, name).items():
        if CARD_FILE in files:  # else claimed, still being written (or abandoned by a crash)
            card = json.loads(storage.read_text(storage.join(root, name, version, CARD_FILE)))
            cards.append({**card, "version": version, "current": version == current_version})
    return cards


def current(root: str, name: str) -> dict[str, Any] | None:
    """The ``current.json`` content plus ``"uri"`` of its version folder; None if none yet."""
    root = _absolute(root)
    _check_name(name)
    pointer = _read_pointer(root, name)
    return None if pointer is None else _with_uri(root, name, pointer)


def rollback(root: str, name: str, version: str | None = None) -> dict[str, Any]:
    """Make an earlier version current again; returns the new :func:`current`.

    ``version=None`` goes back to the previous current one (repeatable, like undo); a named
    version becomes current and the replaced one joins the history, so ``None`` undoes it.
    """
    root = _absolute(root)
    _check_name(name)
    wanted = None if version is None else _normalise_version(version)
    if wanted is not None:
        _read_card(root, name, wanted)  # unknown version: ValueError before touching anything

    def decide(pointer: Pointer | None) -> tuple[Pointer | None, str]:
        if pointer is None and wanted is None:
            raise ValueError(f"{name}: no current model under {root}; register a model first")
        history = [] if pointer is None else list(pointer.get("previous", []))
        if pointer is None:  # versions without a pointer: a register crashed before promoting
            target = wanted
        elif wanted is None:
            if not history:
                raise ValueError(
                    f"{name}: {pointer['version']} has no earlier current version to roll back "
                    f"to; name one with --version (see the list command)"
                )
            target = history.pop()["version"]
        elif wanted == pointer["version"]:
            return None, f"{wanted} is already current"
        else:
            target = wanted
            history.append(_history_entry(pointer))
        card = _read_card(root, name, target)
        reason = f"rolled back from {pointer['version'] if pointer else 'no current version'}"
        return _pointer(name, target, card["metric"], card["value"], reason, history), reason

    pointer, _, _ = _swap_current(root, name, decide)
    return _with_uri(root, name, pointer)


def resolve_model(root: str, name: str, version: str | None = None) -> str:
    """The checkpoint folder of the current version (or of ``version``) for ``load_checkpoint``."""
    root = _absolute(root)
    _check_name(name)
    if version is None:
        pointer = _read_pointer(root, name)
        if pointer is None:
            raise ValueError(f"{name}: no current model under {root}; register one first")
        return storage.join(root, name, pointer["version"])
    version = _normalise_version(version)
    _read_card(root, name, version)
    return storage.join(root, name, version)


# --- the pointer ----------------------------------------------------------------------------


def _swap_current(
    root: str, name: str, decide: Callable[[Pointer | None], tuple[Pointer | None, str]]
) -> tuple[Pointer | None, bool, str]:
    """Read, decide and compare-and-swap ``current.json`` until our write wins.

    ``decide`` sees the pointer as it is now on every attempt and returns the new pointer (or
    None to leave it alone) and a reason. Returns ``(pointer now, written, reason)``.
    """
    uri = storage.join(root, name, CURRENT_FILE)
    for attempt in range(_ATTEMPTS):
        data, token = storage.read_with_token(uri)
        pointer = None if data is None else _loads(data, uri)
        new, reason = decide(pointer)
        if new is None:
            return pointer, False, reason
        if storage.write_bytes_if(uri, _dumps(new).encode(), token):
            return new, True, reason
        time.sleep(random.uniform(0, 0.01 * (attempt + 1)))  # another writer won; back off
    raise RuntimeError(f"{uri}: still conflicting after {_ATTEMPTS} attempts; retry later")


def _promotion(
    name: str, pointer: Pointer | None, version: str, metric: str, value: float, force: bool
) -> tuple[Pointer | None, str]:
    history = [] if pointer is None else [*pointer.get("previous", []), _history_entry(pointer)]
    if pointer is None:
        reason = f"first version of {name}"
    elif force:
        reason = f"forced over {pointer['version']} ({pointer['metric']} {pointer['value']:.4f})"
    elif pointer["metric"] != metric:
        return None, (
            f"not promoted: current {pointer['version']} was chosen on {pointer['metric']}, not "
            f"{metric}; use force to replace it"
        )
    elif value > pointer["value"]:
        reason = f"{metric} {value:.4f} > {pointer['value']:.4f} of {pointer['version']}"
    else:
        return None, (
            f"not promoted: {metric} {value:.4f} does not beat {pointer['value']:.4f} of "
            f"{pointer['version']}"
        )
    return _pointer(name, version, metric, value, reason, history), reason


def _pointer(
    name: str, version: str, metric: str, value: float, reason: str, history: list[dict]
) -> Pointer:
    return {
        "name": name,
        "version": version,
        "metric": metric,
        "value": value,
        "updated": _now(),
        "reason": reason,
        "previous": history,  # earlier current versions, oldest first; rollback pops the last
    }


def _history_entry(pointer: Pointer) -> dict[str, Any]:
    return {k: pointer.get(k) for k in ("version", "metric", "value", "updated")}


def _read_pointer(root: str, name: str) -> Pointer | None:
    uri = storage.join(root, name, CURRENT_FILE)
    data, _ = storage.read_with_token(uri)
    return None if data is None else _loads(data, uri)


def _with_uri(root: str, name: str, pointer: Pointer) -> dict[str, Any]:
    return {**pointer, "uri": storage.join(root, name, pointer["version"])}


# --- versions -------------------------------------------------------------------------------


def _claim_version(root: str, name: str, checkpoint: str) -> str:
    """Reserve the next free id by creating its ``claim.json`` only if absent."""
    taken = _listing(root, name)
    number = max((int(_VERSION.fullmatch(v)[1]) for v in taken), default=0) + 1
    claim = {
        "source": checkpoint,
        "claimed": _now(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }
    for _ in range(_ATTEMPTS):
        version = f"v{number:04d}"
        uri = storage.join(root, name, version, CLAIM_FILE)
        if storage.write_bytes_if(uri, _dumps(claim).encode(), None):
            return version
        number += 1  # taken by a concurrent register
    raise RuntimeError(f"{storage.join(root, name)}: no free version id after {_ATTEMPTS} tries")


def _listing(root: str, name: str) -> dict[str, set[str]]:
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


def _read_card(root: str, name: str, version: str) -> dict[str, Any]:
    uri = storage.join(root, name, version, CARD_FILE)
    if not storage.exists(uri):
        known = [v for v, files in _listing(root, name).items() if CARD_FILE in files]
        raise ValueError(
            f"{name}: no version {version} under {root}; known versions: "
            f"{', '.join(known) or 'none'}"
        )
    return _loads(storage.read_bytes(uri), uri)


def _card(
    name: str,
    version: str,
    checkpoint: str,
    meta: dict[str, Any],
    metric: str,
    value: float,
    parent: dict | None,
    test_metrics: dict | None,
) -> dict[str, Any]:
    train = meta.get("train") or {}
    return {
        "name": name,
        "version": version,
        "arch": meta.get("arch"),
        "in_channels": meta.get("in_channels"),
        "classes": meta.get("classes"),
        "label_map": meta.get("label_map"),
        "loss": {k: train.get(k) for k in ("dice", "focal", "gamma")},
        "data": train.get("data"),
        "preprocess": meta.get("preprocess"),
        "metrics": meta.get("metrics"),  # the best epoch's metrics as training reported them
        "test_metrics": test_metrics,
        "metric": metric,
        "value": value,
        "created": _now(),
        "trained": meta.get("created"),
        "parent": parent or {},
        "source": checkpoint,
        "livseg_version": meta.get("livseg_version"),
    }


# --- input checks and helpers ---------------------------------------------------------------


def _checkpoint_meta(checkpoint: str) -> dict[str, Any]:
    for file in CHECKPOINT_FILES:
        if not storage.exists(storage.join(checkpoint, file)):
            raise ValueError(f"{checkpoint}: not a livseg checkpoint (no {file})")
    meta_uri = storage.join(checkpoint, CHECKPOINT_FILES[1])
    meta = _loads(storage.read_bytes(meta_uri), meta_uri)
    if not isinstance(meta, dict):
        raise ValueError(f"{meta_uri}: expected a JSON object")
    return meta


def _metric_value(meta: dict[str, Any], metric: str, checkpoint: str) -> float:
    metrics = meta.get("metrics") or {}
    value = metrics.get(metric)
    usable = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not usable or not math.isfinite(value):
        state = "missing" if value is None else f"{value!r}, not a finite number"
        raise ValueError(
            f"{checkpoint}: metric {metric!r} is {state} in meta.json; available metrics: "
            f"{', '.join(sorted(metrics)) or 'none'}; choose one with metric=/--metric"
        )
    return float(value)


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            f"{name!r}: model name must be letters, digits, '.', '_' or '-' "
            f"(it becomes a folder name), e.g. livseg"
        )


def _normalise_version(version: str) -> str:
    """``"v0003"``, ``"v3"`` and ``"3"`` all name version v0003."""
    match = re.fullmatch(r"v?(\d+)", str(version).strip())
    if not match:
        raise ValueError(f"{version!r}: not a version id; write it like v0003")
    return f"v{int(match[1]):04d}"


def _absolute(uri: str) -> str:
    """S3 URIs as given; local paths absolute, so a Serve replica elsewhere finds them."""
    return str(uri).rstrip("/") if storage.is_s3(uri) else storage.filesystem(uri)[1]


def _loads(data: bytes, uri: str) -> Any:
    try:
        return json.loads(data)
    except ValueError as exc:
        raise ValueError(f"{uri}: not valid JSON ({exc}); restore it from a backup") from exc


def _dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2) + "\n"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
