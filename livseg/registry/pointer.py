"""``current.json``: which version Serve loads, the promotion rule, compare-and-swap updates.

A candidate replaces current only when its validation score is strictly better on the same
metric *and* was scored on the same validation set (shard set fingerprint, case ids and grid):
two Dice values from different cases or resolutions are unlike numbers. Otherwise the caller
must force it, and the reason says why.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from livseg.io import read_with_token, storage, write_bytes_if
from livseg.registry.cards import ATTEMPTS, CURRENT_FILE, dumps, loads, now

Pointer = dict[str, Any]


def swap_current(
    root: str, name: str, decide: Callable[[Pointer | None], tuple[Pointer | None, str]]
) -> tuple[Pointer | None, bool, str]:
    """Read, decide and compare-and-swap ``current.json`` until our write wins.

    ``decide`` sees the pointer as it is now on every attempt and returns the new pointer (or
    None to leave it alone) and a reason. Returns ``(pointer now, written, reason)``.
    """
    uri = storage.join(root, name, CURRENT_FILE)
    for attempt in range(ATTEMPTS):
        data, token = read_with_token(uri)
        pointer = None if data is None else loads(data, uri)
        new, reason = decide(pointer)
        if new is None:
            return pointer, False, reason
        if write_bytes_if(uri, dumps(new).encode(), token):
            return new, True, reason
        time.sleep(random.uniform(0, 0.01 * (attempt + 1)))  # another writer won; back off
    raise RuntimeError(f"{uri}: still conflicting after {ATTEMPTS} attempts; retry later")


def describe_validation(validation: dict | None) -> str:
    """``"2 cases of shards 3f2a91c0…, grid 128×128"`` (or that it is unknown)."""
    if not validation:
        return "an unrecorded validation set"
    grid = validation.get("grid") or "?"
    grid = grid if isinstance(grid, str) else "×".join(str(v) for v in grid)  # "original" grids
    data = str(validation.get("data") or "?")[:8]
    return f"{len(validation.get('case_ids') or [])} cases of shards {data}…, grid {grid}"


def comparable(a: dict | None, b: dict | None) -> bool:
    """True when two validation records name the same shard set, cases and grid."""
    keys = ("data", "split", "case_ids", "grid")
    return bool(a and b) and all(a.get(k) == b.get(k) for k in keys)


def promotion(
    name: str,
    pointer: Pointer | None,
    candidate: dict[str, Any],
    force: bool,
) -> tuple[Pointer | None, str]:
    """The new pointer (or None) and why, for ``candidate`` = {version, metric, value,
    validation} against the current ``pointer``."""
    version, metric, value = candidate["version"], candidate["metric"], candidate["value"]
    history = [] if pointer is None else [*pointer.get("previous", []), history_entry(pointer)]
    if pointer is None:
        reason = f"first version of {name}"
    elif force:
        reason = f"forced over {pointer['version']} ({pointer['metric']} {pointer['value']:.4f})"
    elif pointer["metric"] != metric:
        return None, (
            f"not promoted: current {pointer['version']} was chosen on {pointer['metric']}, not "
            f"{metric}; use force to replace it"
        )
    elif not comparable(pointer.get("validation"), candidate.get("validation")):
        return None, (
            f"not promoted: {version} was validated on "
            f"{describe_validation(candidate.get('validation'))}, current {pointer['version']} "
            f"on {describe_validation(pointer.get('validation'))}, so their {metric} values are "
            "not comparable; score both on one test set (jobs/evaluate.py --model A --model B) "
            "and use force (jobs/registry.py rollback --version, or register --force) to switch"
        )
    elif value > pointer["value"]:
        reason = f"{metric} {value:.4f} > {pointer['value']:.4f} of {pointer['version']}"
    else:
        return None, (
            f"not promoted: {metric} {value:.4f} does not beat {pointer['value']:.4f} of "
            f"{pointer['version']}"
        )
    return make_pointer(name, candidate, reason, history), reason


def make_pointer(name: str, candidate: dict[str, Any], reason: str, history: list[dict]) -> Pointer:
    return {
        "name": name,
        "version": candidate["version"],
        "metric": candidate["metric"],
        "value": candidate["value"],
        "validation": candidate.get("validation"),
        "updated": now(),
        "reason": reason,
        "previous": history,  # earlier current versions, oldest first; rollback pops the last
    }


def history_entry(pointer: Pointer) -> dict[str, Any]:
    return {k: pointer.get(k) for k in ("version", "metric", "value", "updated")}


def read_pointer(root: str, name: str) -> Pointer | None:
    uri = storage.join(root, name, CURRENT_FILE)
    data, _ = read_with_token(uri)
    return None if data is None else loads(data, uri)
