"""``ServeSettings``: everything the Serve application needs, as one frozen config.

The same keys work as ``jobs/serve.py`` flags, as ``serve run livseg.serve:build_app key=value``
arguments and in a Serve config file's ``args:`` block.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from livseg.errors import UsageError
from livseg.inference import ReviewLimits
from livseg.io import storage

LOOPBACK_NAMES = ("localhost",)


@dataclass(frozen=True)
class ServeSettings:
    """Settings of the Serve application (HTTP limits, model, replicas)."""

    # A registry entry (ROOT/NAME: the folder holding current.json) or a checkpoint folder.
    model: str = "livseg-work/models/livseg"
    host: str = "127.0.0.1"
    port: int = 8000
    device: str = "auto"  # "auto" (cuda when a GPU is visible), "cpu" or "cuda"
    # Bearer token: the first of these that is set. Only a SHA-256 digest reaches the replicas.
    token_env: str = "LIVSEG_SERVE_TOKEN"
    token_file: str = ""
    # URI prefixes /v1/segment-uri may read and write (folders or s3://bucket/prefix).
    roots: tuple[str, ...] = ()
    max_body_mb: float = 512.0  # request bodies above this → 413
    bodies_in_flight: int = 8  # /v1/segment bodies the ingress holds at once; others wait
    # Decoded volumes above this → 413 (≈ 10 bytes per voxel per study in flight: HU float32,
    # the QA pass's shifted copy, labels).
    max_voxels: int = 512 * 512 * 1200
    qa: bool = True  # shifted second pass for the agreement score (2× the model's work)
    # Review flag thresholds (``livseg.inference.ReviewLimits``; defaults suit adult abdominal CT).
    # min_certainty: None takes the model's own limit, calibrated on its validation cases and
    # recorded in its checkpoint (``livseg.evaluate.calibrate_review``), else 0.94.
    min_certainty: float | None = None
    min_agreement: float = 0.90
    liver_ml_min: float = 400.0
    liver_ml_max: float = 4000.0
    edge_fraction: float = 0.2
    batch_size: int = 16  # slices per forward pass
    min_replicas: int = 1
    max_replicas: int = 1
    cpus_per_replica: float = 1.0
    gpus_per_replica: float = 0.0  # 1 on GPU clusters
    max_ongoing_requests: int = 4  # per model replica: decodes overlap, the model runs one study
    reload_interval_s: float = 30.0  # how often replicas check the registry's current version

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise UsageError(f"port={self.port}: choose a TCP port between 1 and 65535")
        if self.device not in ("auto", "cpu", "cuda"):
            raise UsageError(f"device={self.device!r}: use auto, cpu or cuda")
        if self.max_body_mb <= 0 or self.max_voxels < 1:
            raise UsageError(
                f"max_body_mb={self.max_body_mb}, max_voxels={self.max_voxels}: both must be > 0"
            )
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise UsageError(
                f"replicas {self.min_replicas}..{self.max_replicas}: need 1 ≤ min ≤ max"
            )
        for key in ("batch_size", "max_ongoing_requests", "bodies_in_flight"):
            if getattr(self, key) < 1:
                raise UsageError(f"{key}={getattr(self, key)}: must be ≥ 1")
        if self.reload_interval_s <= 0 or self.cpus_per_replica < 0 or self.gpus_per_replica < 0:
            raise UsageError(
                f"reload_interval_s={self.reload_interval_s} must be > 0, cpus_per_replica="
                f"{self.cpus_per_replica} and gpus_per_replica={self.gpus_per_replica} ≥ 0"
            )
        try:
            _ = self.review_limits()  # ReviewLimits checks its own values
        except ValueError as exc:
            raise UsageError(f"review thresholds: {exc}") from None
        if isinstance(self.roots, str):  # a single root given as a string
            object.__setattr__(self, "roots", (self.roots,) if self.roots else ())
        # Replicas run in other working directories (other nodes): relative paths resolve here.
        object.__setattr__(self, "model", storage.absolute(self.model))
        object.__setattr__(self, "roots", tuple(storage.absolute(r) for r in self.roots))

    def review_limits(self, model_min_certainty: float | None = None) -> ReviewLimits:
        """The review thresholds for a model whose checkpoint records ``model_min_certainty``
        (None: not calibrated); ``min_certainty``, when set, overrides the model's."""
        certainty = self.min_certainty if self.min_certainty is not None else model_min_certainty
        return ReviewLimits.for_model(
            certainty, min_agreement=self.min_agreement,
            liver_ml=(self.liver_ml_min, self.liver_ml_max), edge_fraction=self.edge_fraction,
        )  # fmt: skip

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    @property
    def loopback(self) -> bool:
        """True when HTTP listens on this machine only (no token needed then)."""
        if self.host in LOOPBACK_NAMES:
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False
