"""Model registry: versions of checkpoints on local or ``s3://`` storage, the ``current``
pointer Serve loads, the promotion rule and rollback. Loads without torch."""

from livseg.registry.cards import CARD_FILE, CHECKPOINT_FILES, CURRENT_FILE, DEFAULT_METRIC
from livseg.registry.pointer import comparable
from livseg.registry.store import (
    current, list_versions, register, resolve_checkpoint, resolve_model, rollback,
)

__all__ = [
    "CARD_FILE", "CHECKPOINT_FILES", "CURRENT_FILE", "DEFAULT_METRIC", "comparable", "current",
    "list_versions", "register", "resolve_checkpoint", "resolve_model", "rollback",
]  # fmt: skip
