"""The archive job's ledger: what is done or failed, per model version and input content.

``OUTPUT/ledger/<model>/done/<fingerprint>.json`` and ``…/failed/<fingerprint>.json``, one small
file per study, each written atomically after its outputs: a kill at any moment leaves either
no entry (the study is redone) or an entry whose mask exists. Listing the two folders tells a
rerun what to skip without reading every entry. A new model version starts an empty ledger, so
everything is segmented again.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from livseg.io import storage


def model_id(info: dict[str, Any]) -> str:
    """Ledger folder of a model: ``name-version``, or a hash of a bare checkpoint's URI."""
    if info.get("version"):
        return f"{info['name']}-{info['version']}"
    return "checkpoint-" + hashlib.sha256(str(info.get("checkpoint")).encode()).hexdigest()[:12]


class Ledger:
    """Done and failed studies of one model version under ``output``."""

    def __init__(self, output: str, model: str):
        self.model = model
        self.root = storage.join(output, "ledger", model)
        self.done = self._listed("done")
        self.failed = self._listed("failed")

    def _listed(self, status: str) -> set[str]:
        folder = storage.join(self.root, status)
        if not storage.exists(folder):
            return set()
        names = (storage.basename(uri) for uri, _ in storage.list_files(folder))
        return {n[: -len(".json")] for n in names if n.endswith(".json")}

    def record(self, fingerprint: str, status: str, row: dict[str, Any]) -> None:
        """Write the study's entry (``status`` done or failed) atomically."""
        if status not in ("done", "failed"):
            raise ValueError(f"status {status!r}: use 'done' or 'failed'")
        data = json.dumps(row, sort_keys=True, default=str).encode()
        storage.write_bytes(storage.join(self.root, status, f"{fingerprint}.json"), data)
        (self.done if status == "done" else self.failed).add(fingerprint)

    def rows(self, status: str) -> list[dict[str, Any]]:
        """Every entry of ``status`` (the report is rebuilt from these after each run)."""
        folder = storage.join(self.root, status)
        if not storage.exists(folder):
            return []
        return [
            json.loads(storage.read_bytes(uri))
            for uri, _ in storage.list_files(folder)
            if uri.endswith(".json")
        ]
