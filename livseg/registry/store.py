"""Model registry: numbered copies of checkpoints and the pointer to the one Serve loads.

Layout under ROOT (a local folder or an ``s3://`` prefix)::

    ROOT/NAME/v0001/claim.json     reserves the id (created only if absent)
    ROOT/NAME/v0001/model.pt       copy of the checkpoint (training state left out)
    ROOT/NAME/v0001/meta.json
    ROOT/NAME/v0001/card.json      what the model is and how good it is; written last
    ROOT/NAME/current.json         the version Serve loads and the earlier current ones

A version is complete once its ``card.json`` exists; versions are never rewritten. Concurrent
writers are settled by conditional writes (``io.conditional``): ids by create-if-absent of
``claim.json``, ``current.json`` by compare-and-swap, with the promotion decision re-made
against the fresh pointer after every lost race.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from livseg.errors import UsageError
from livseg.io import storage
from livseg.registry.cards import (
    CARD_FILE,
    CHECKPOINT_FILES,
    CURRENT_FILE,
    DEFAULT_METRIC,
    build_card,
    check_name,
    checkpoint_files,
    checkpoint_meta,
    claim_version,
    dumps,
    listing,
    metric_value,
    normalise_version,
    read_card,
)
from livseg.registry.pointer import (
    Pointer,
    history_entry,
    make_pointer,
    promotion,
    read_pointer,
    swap_current,
)


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
    metric and the same validation set (``meta["validation"]``); the first version and
    ``force=True`` are always promoted. ``test_metrics``: an evaluation's summary, kept on the
    card. Returns ``{"version", "promoted", "current", "reason", "uri", "metric", "value"}``.
    """
    root, checkpoint = storage.absolute(root), storage.absolute(checkpoint)
    check_name(name)
    for label, given in (("parent", parent), ("test_metrics", test_metrics)):
        if given is not None and not isinstance(given, dict):
            raise UsageError(f"{label} must be a dict, got {type(given).__name__}")
    meta = checkpoint_meta(checkpoint)
    value = metric_value(meta, metric, checkpoint)
    names = checkpoint_files(meta, checkpoint)
    version = claim_version(root, name, checkpoint)
    folder = storage.join(root, name, version)
    files = {file: storage.read_bytes(storage.join(checkpoint, file)) for file in names}
    for file, data in files.items():
        storage.write_bytes(storage.join(folder, file), data)
    card = build_card(name, version, checkpoint, meta, metric, value, parent, test_metrics)
    card["model_sha256"] = hashlib.sha256(files[CHECKPOINT_FILES[0]]).hexdigest()
    if len(names) > len(CHECKPOINT_FILES):  # a cascade: its tumour stage's weights too
        card["tumour_model_sha256"] = hashlib.sha256(files[names[-2]]).hexdigest()
    storage.write_text(storage.join(folder, CARD_FILE), dumps(card))
    candidate = {"version": version, "metric": metric, "value": value,
                 "validation": meta.get("validation")}  # fmt: skip

    def decide(pointer: Pointer | None) -> tuple[Pointer | None, str]:
        return promotion(name, pointer, candidate, force)

    pointer, promoted, reason = swap_current(root, name, decide)
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
    root = storage.absolute(root)
    check_name(name)
    pointer = read_pointer(root, name)
    current_version = pointer["version"] if pointer else None
    cards = []
    for version, files in listing(root, name).items():
        if CARD_FILE in files:  # else claimed, still being written (or abandoned by a crash)
            card = json.loads(storage.read_text(storage.join(root, name, version, CARD_FILE)))
            cards.append({**card, "version": version, "current": version == current_version})
    return cards


def current(root: str, name: str) -> dict[str, Any] | None:
    """The ``current.json`` content plus ``"uri"`` of its version folder; None if none yet."""
    root = storage.absolute(root)
    check_name(name)
    pointer = read_pointer(root, name)
    return (
        None
        if pointer is None
        else {**pointer, "uri": storage.join(root, name, pointer["version"])}
    )


def rollback(root: str, name: str, version: str | None = None) -> dict[str, Any]:
    """Make an earlier version current again; returns the new :func:`current`.

    ``version=None`` goes back to the previous current one (repeatable, like undo); a named
    version becomes current and the replaced one joins the history, so ``None`` undoes it.
    """
    root = storage.absolute(root)
    check_name(name)
    wanted = None if version is None else normalise_version(version)
    if wanted is not None:
        read_card(root, name, wanted)  # unknown version: UsageError before touching anything

    def decide(pointer: Pointer | None) -> tuple[Pointer | None, str]:
        if pointer is None and wanted is None:
            raise UsageError(f"{name}: no current model under {root}; register a model first")
        history = [] if pointer is None else list(pointer.get("previous", []))
        if pointer is None:  # versions without a pointer: a register crashed before promoting
            target = wanted
        elif wanted is None:
            if not history:
                raise UsageError(
                    f"{name}: {pointer['version']} has no earlier current version to roll back "
                    f"to; name one with --version (see the list command)"
                )
            target = history.pop()["version"]
        elif wanted == pointer["version"]:
            return None, f"{wanted} is already current"
        else:
            target = wanted
            history.append(history_entry(pointer))
        card = read_card(root, name, target)
        reason = f"rolled back from {pointer['version'] if pointer else 'no current version'}"
        candidate = {"version": target, "metric": card["metric"], "value": card["value"],
                     "validation": card.get("validation")}  # fmt: skip
        return make_pointer(name, candidate, reason, history), reason

    swap_current(root, name, decide)
    return current(root, name)


def resolve_model(root: str, name: str, version: str | None = None) -> str:
    """The checkpoint folder of the current version (or of ``version``) for ``load_checkpoint``."""
    root = storage.absolute(root)
    check_name(name)
    if version is None:
        pointer = read_pointer(root, name)
        if pointer is None:
            raise UsageError(f"{name}: no current model under {root}; register one first")
        return storage.join(root, name, pointer["version"])
    version = normalise_version(version)
    read_card(root, name, version)
    return storage.join(root, name, version)


def resolve_checkpoint(uri: str) -> str:
    """A checkpoint folder as given, or the current version of a registry entry
    (``ROOT/NAME``, the folder holding ``current.json``)."""
    if storage.exists(storage.join(uri, CHECKPOINT_FILES[1])):
        return uri
    if storage.exists(storage.join(uri, CURRENT_FILE)):
        parent, name = storage.absolute(uri).rsplit("/", 1)
        return resolve_model(parent, name)
    raise UsageError(
        f"--model {uri}: neither a checkpoint (no meta.json) nor a registry entry "
        "(no current.json); pass a checkpoint folder printed by jobs/train.py"
    )
