"""``ModelServer``: the Segmenter replica of the Serve app (plain class; ``app`` deploys it).

One study at a time runs on the model (a lock), while other requests decode their volumes in
threads (nibabel/zlib and pydicom release the GIL for the heavy parts), so the next study is
ready when the model frees up. Failures come back as ``{"status": code, "detail": …}`` rather
than exceptions, so a bad volume never kills a replica and the ingress maps them to HTTP codes.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass

from livseg.config import from_dict
from livseg.errors import UsageError
from livseg.inference import Cascade, Segmenter, analyse_study, load_segmenter, thumbnail_png
from livseg.io import (
    VolumeError,
    VolumeTooLarge,
    read_dicom_files,
    read_volume,
    storage,
    write_dicom_seg,
    write_mask,
)  # fmt: skip
from livseg.registry import (
    CURRENT_FILE,
    current,
    list_versions,
    resolve_checkpoint,
    resolve_model,
)  # fmt: skip
from livseg.serve.codec import RequestError, mask_body, volume_from_body
from livseg.serve.security import Forbidden, confine, study_key
from livseg.serve.settings import ServeSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    segmenter: Segmenter | Cascade
    info: dict  # name, version, arch, checkpoint, metric, value, test_metrics


def pick_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("device=cuda but this replica sees no GPU; use device=auto or cpu")
    return device


def registry_version(model: str) -> str | None:
    """The current version of a registry entry, or None when ``model`` is a checkpoint."""
    if not storage.exists(storage.join(model, CURRENT_FILE)):
        return None
    parent, name = storage.absolute(model).rsplit("/", 1)
    pointer = current(parent, name)
    return None if pointer is None else pointer["version"]


def load_model(model: str, device: str, batch_size: int, version: str | None = None) -> LoadedModel:
    """Load ``version`` of a registry entry (default: its current one, the pointer read once,
    so the weights and the version named always agree) or a checkpoint folder."""
    version = version or registry_version(model)
    if version is None:
        checkpoint = resolve_checkpoint(model)  # a checkpoint folder
    else:
        parent, name = storage.absolute(model).rsplit("/", 1)
        checkpoint = resolve_model(parent, name, version)
    segmenter = load_segmenter(checkpoint, device, batch_size)
    meta = segmenter.meta
    info = {"name": None, "version": None, "arch": meta["arch"], "checkpoint": checkpoint,
            "label_map": meta["label_map"], "metric": None, "value": None,
            "test_metrics": None}  # fmt: skip
    if version is not None:
        card = next(c for c in list_versions(parent, name) if c["version"] == version)
        info.update(name=name, version=version, metric=card.get("metric"),
                    value=card.get("value"), test_metrics=card.get("test_metrics"))  # fmt: skip
    return LoadedModel(segmenter, info)


class ModelServer:
    """Segments studies with the registry's current model and follows ``current`` changes."""

    def __init__(self, settings: dict, threads: int = 0):
        """``threads``: torch's intra-op threads on CPU (``torch_threads``, read where the app
        is built); 0 leaves Ray's default (OMP_NUM_THREADS)."""
        self.settings = from_dict(ServeSettings, settings)
        self.device = pick_device(self.settings.device)
        if self.device == "cpu" and threads:
            import torch

            torch.set_num_threads(threads)
        self.loaded = load_model(self.settings.model, self.device, self.settings.batch_size)
        self._model_lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._watch, name="livseg-reload", daemon=True).start()

    def _watch(self) -> None:
        while not self._stop.wait(self.settings.reload_interval_s):
            try:
                self.reload()
            except Exception as exc:  # noqa: BLE001 - keep serving the loaded model; say why
                log.error("checking the registry for a new current model failed: %s", exc)

    def reload(self) -> dict:
        """Load the registry's current version if it changed; in-flight studies finish on the
        model they started with (the swap replaces one reference)."""
        with self._reload_lock:
            version = registry_version(self.settings.model)
            changed = version is not None and version != self.loaded.info["version"]
            if changed:
                fresh = load_model(self.settings.model, self.device, self.settings.batch_size,
                                   version)  # fmt: skip
                log.info("now serving %s %s", fresh.info["name"], fresh.info["version"])
                self.loaded = fresh
            return {**self.loaded.info, "reloaded": changed}

    def outside_roots(self, uris: list[str]) -> list[str]:
        """The ``uris`` this server may not read or write (a client checks before a long run)."""
        outside = []
        for uri in uris:
            try:
                confine(uri, self.settings.roots)
            except Forbidden:
                outside.append(uri)
        return outside

    def info(self) -> dict:
        """The model's facts plus this replica's actor name and node (for operators and tests)."""
        import ray
        from ray import serve

        replica = serve.get_replica_context().replica_id.to_full_id_str()
        node = ray.get_runtime_context().get_node_id()
        return {**self.loaded.info, "replica": replica, "node": node}

    def _analyse(self, volume) -> tuple:
        loaded = self.loaded
        # The lock covers the model passes only: statistics run beside the next study's passes.
        result = analyse_study(
            loaded.segmenter, volume, qa=self.settings.qa,
            limits=self.settings.review_limits(loaded.segmenter.min_certainty),
            lock=self._model_lock,
        )  # fmt: skip
        model = {k: loaded.info[k] for k in ("name", "version", "arch")}
        return result, {"model": model, **result.report}

    def _segment_body(self, body: bytes) -> dict:
        start = time.perf_counter()
        decoded_limit = self.settings.max_voxels * 8 + (1 << 20)  # float64 voxels + header
        volume = volume_from_body(body, decoded_limit, self.settings.max_voxels)
        result, report = self._analyse(volume)
        report["seconds"]["request"] = round(time.perf_counter() - start, 3)
        return {"status": 200, "mask": mask_body(result.labels, volume), "report": report}

    def _segment_uri(
        self, source: str | list[str], target: str, seg: str | None, thumbnail: str | None
    ) -> dict:
        start = time.perf_counter()
        roots = self.settings.roots
        target = confine(target, roots)
        seg = None if seg is None else confine(seg, roots)
        thumbnail = None if thumbnail is None else confine(thumbnail, roots)
        if isinstance(source, list) and not source:
            raise RequestError(422, "input: an empty list of DICOM files")
        inputs = [confine(uri, roots) for uri in (source if isinstance(source, list) else [source])]
        if thumbnail is not None and not thumbnail.endswith(".png"):
            raise RequestError(422, f"thumbnail_output {thumbnail!r}: name a .png file")
        if seg is not None and not seg.endswith(".dcm"):
            raise RequestError(422, f"seg_output {seg!r}: name a .dcm file")
        if {target, seg, thumbnail} & set(inputs):
            raise RequestError(422, "an output names an input file: it would be overwritten")
        if not target.endswith((".nii", ".nii.gz")):
            raise RequestError(422, f"output {target!r}: name a .nii or .nii.gz file")
        if isinstance(source, list):  # the files of one DICOM series, wherever they lie
            volume = read_dicom_files([(uri, -1) for uri in inputs],
                                      f"DICOM series of {len(inputs)} files",
                                      max_voxels=self.settings.max_voxels)  # fmt: skip
            name = "\n".join(sorted(source))
        else:
            name = source = inputs[0]
            if storage.is_dir(source):  # each file of a series folder: links may lead out
                for uri, _ in storage.list_files(source):
                    confine(uri, roots)
            volume = read_volume(source, max_voxels=self.settings.max_voxels)
        if seg is not None and volume.meta.get("format") != "dicom":
            raise RequestError(422, "seg_output: a DICOM SEG needs a DICOM series as input")
        result, report = self._analyse(volume)
        write_mask(result.labels, volume, target)
        if seg is not None:
            write_dicom_seg(result.labels, volume, seg, str(report["model"]["version"]))
        if thumbnail is not None:
            png = thumbnail_png(volume.array, result.labels, volume.spacing[:2])
            storage.write_bytes(thumbnail, png)
        report["seconds"]["request"] = round(time.perf_counter() - start, 3)
        log.info("study %s segmented in %.1f s", study_key(name), time.perf_counter() - start)
        outputs = {"output": target, "seg_output": seg, "thumbnail_output": thumbnail}
        return {"status": 200, "report": {**report, **outputs}}

    async def segment_body(self, body: bytes) -> dict:
        return await self._guarded(self._segment_body, body)

    async def segment_uri(
        self,
        source: str | list[str],
        target: str,
        seg: str | None = None,
        thumbnail: str | None = None,
    ) -> dict:
        return await self._guarded(self._segment_uri, source, target, seg, thumbnail)

    async def _guarded(self, work, *args) -> dict:
        try:
            return await asyncio.to_thread(work, *args)
        except RequestError as exc:
            return {"status": exc.status, "detail": exc.detail}
        except VolumeTooLarge as exc:
            return {"status": 413, "detail": str(exc)}
        except Forbidden as exc:
            return {"status": 403, "detail": str(exc)}
        except VolumeError as exc:  # a stored input that is not a usable CT volume
            return {"status": 422, "detail": str(exc)}
        except FileNotFoundError as exc:
            return {"status": 404, "detail": f"not found: {exc}"}
        except Exception as exc:  # noqa: BLE001 - one bad study must not kill the replica
            # The type only: messages and tracebacks carry paths, which may name patients.
            log.error("segmentation failed: %s", type(exc).__name__)
            return {"status": 500, "detail": f"{type(exc).__name__}: segmentation failed"}
