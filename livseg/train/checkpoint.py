"""Model checkpoints that load without Ray: ``model.pt`` (state dict) + ``meta.json``.

``meta.json`` carries what inference needs to reproduce training exactly: arch, channels,
classes, label map, the preprocessing record (window, statistics, size, context) and metrics.
Training state (optimizer, scheduler, epoch, history) sits beside it in ``train_state.pt``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from livseg.errors import UsageError
from livseg.io import storage
from livseg.train.models import build_model, is_volumetric

if TYPE_CHECKING:
    import pyarrow.fs

MODEL_FILE, META_FILE, STATE_FILE = "model.pt", "meta.json", "train_state.pt"


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside DDP/compile wrappers."""
    return getattr(model, "module", model)


def save_checkpoint(
    folder: str | Path, model: nn.Module, meta: dict[str, Any], train_state: dict | None = None
) -> None:
    """Write a checkpoint folder (local); tensors are moved to CPU first."""
    import pyarrow.fs

    state = {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}
    path = str(Path(folder).resolve())
    write_checkpoint(pyarrow.fs.LocalFileSystem(), path, state, meta, train_state)


def write_checkpoint(
    fs: pyarrow.fs.FileSystem, path: str, weights: dict, meta: dict, train_state: dict | None
) -> None:
    """Write a checkpoint folder (``model.pt``, ``meta.json``, ``train_state.pt`` when given)
    at ``path`` of the pyarrow filesystem ``fs``; ``meta.json`` last, so that a folder whose
    write stopped part-way is refused by ``read_meta``."""
    fs.create_dir(path, recursive=True)
    files = [(MODEL_FILE, weights)] + (
        [(STATE_FILE, train_state)] if train_state is not None else []
    )
    for name, obj in files:
        with fs.open_output_stream(f"{path}/{name}") as out:
            torch.save(obj, out)
    with fs.open_output_stream(f"{path}/{META_FILE}") as out:
        out.write(json.dumps(meta, indent=2, default=str).encode())


def read_meta(uri: str) -> dict[str, Any]:
    meta_uri = storage.join(uri, META_FILE)
    if not storage.exists(meta_uri):
        raise UsageError(f"{uri}: not a livseg checkpoint (no {META_FILE})")
    return json.loads(storage.read_text(meta_uri))


def update_meta(uri: str, **keys: Any) -> None:
    """Set ``keys`` in a checkpoint's ``meta.json`` (local or ``s3://``; written atomically)."""
    meta = read_meta(uri)
    meta.update(keys)
    text = json.dumps(meta, indent=2, default=str)
    storage.write_bytes(storage.join(uri, META_FILE), text.encode())


def load_weights(uri: str, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The state dict of a checkpoint folder or ``s3://`` prefix."""
    data = io.BytesIO(storage.read_bytes(storage.join(uri, MODEL_FILE)))
    return torch.load(data, map_location=device, weights_only=True)


def check_init(uri: str, arch: str, record: dict[str, Any]) -> None:
    """Refuse (on the driver) a ``TrainConfig.init`` checkpoint that cannot start ``arch`` on
    shards with this preprocess ``record``; no ``uri`` (training from scratch): nothing to check."""
    if not uri:
        return
    in_channels = 1 if is_volumetric(arch) else record["channels"]
    classes = len(record["label_map"])
    meta = read_meta(uri)
    theirs = (meta["arch"], meta["in_channels"], meta["classes"])
    if theirs != (arch, in_channels, classes):
        raise UsageError(
            f"init={uri}: a {theirs[0]} with {theirs[1]} input channels and {theirs[2]} classes "
            f"cannot start a {arch} with {in_channels} and {classes}; give a checkpoint trained "
            "on shards of the same channels and label mode, with the same --arch"
        )


def load_checkpoint(uri: str, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """(model in eval mode, meta) from a local folder or ``s3://`` prefix; no Ray needed."""
    meta = read_meta(uri)
    model = build_model(meta["arch"], meta["in_channels"], meta["classes"], "none")
    state = load_weights(uri, device)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:  # e.g. a V-Net saved before its classifier layer was added
        raise UsageError(
            f"{uri}: its weights do not fit this livseg's {meta['arch']} (saved by livseg "
            f"{meta.get('livseg_version', '?')}: {str(exc).splitlines()[0]}); retrain the model"
        ) from exc
    return model.to(device).eval(), meta


def load_train_state(folder: str | Path) -> dict[str, Any] | None:
    path = Path(folder, STATE_FILE)
    return torch.load(path, map_location="cpu", weights_only=False) if path.exists() else None
