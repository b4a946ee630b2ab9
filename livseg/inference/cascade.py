"""A two-stage model (``Cascade``, after Christ et al. 2016): stage 1 finds the liver on whole
slices, stage 2 segments liver and tumour inside stage 1's liver box at the resolution of its own
shards (``PreprocessConfig.roi``: the box is a fraction of the field of view, so the same pixels
cover it 2-3× finer; its HU shifted by stage 1's liver as the shards were by the reference
liver, ``livseg.data.roi.shift_to_liver``), and the labels are composed on the input's grid.
Stage 1 places the box, so it can be small and coarse, and says which of stage 2's components
are liver: post-processing drops those stage 1 did not see as liver
(``keep_confirmed_components``: a separate organ of liver-like HU inside the box; a liver piece
stage 1 missed entirely goes too). Same interface as ``Segmenter``.

On disk a cascade is one checkpoint folder (a "bundle"): stage 1's ``model.pt`` and ``meta.json``
with ``meta["cascade"] = {"tumour": "tumour"}``, stage 2's checkpoint in ``tumour/``. Anything that
reads only the top-level checkpoint (the registry's card, ``read_meta``) sees stage 1 plus that
key; ``load_segmenter`` returns a ``Cascade`` for a bundle and a ``Segmenter`` otherwise.
"""

from __future__ import annotations

import json

import numpy as np

from livseg.data import liver_box, shift_to_liver
from livseg.errors import UsageError
from livseg.inference.lesions import LesionRule
from livseg.inference.postprocess import keep_confirmed_components, postprocess_labels
from livseg.inference.qa import model_certainty_limit
from livseg.inference.segmenter import Segmentation, Segmenter
from livseg.io import storage

STAGE_FILES = ("model.pt", "meta.json")
TUMOUR_STAGE = "tumour"  # the bundle's subfolder holding stage 2


class Cascade:
    """Stage 1 (liver, also the foreground the tumour must lie in) then stage 2 (tumour in the
    liver box). ``meta`` is the bundle's; ``device``, ``batch_size``, ``cfg`` and
    ``probabilities`` are stage 1's (what throughput measurements drive)."""

    binary = False
    volumetric = False

    def __init__(self, liver: Segmenter, tumour: Segmenter, meta: dict) -> None:
        if tumour.binary or tumour.volumetric:
            raise UsageError("a cascade's tumour stage must be a multiclass 2-D model")
        if not tumour.cfg.roi:
            raise UsageError("the tumour stage was not trained on ROI shards (--roi)")
        if liver.cfg.roi:
            raise UsageError("the liver stage was trained on ROI shards: it needs whole slices")
        self.liver, self.tumour, self.meta = liver, tumour, meta
        self.device, self.batch_size, self.cfg = liver.device, liver.batch_size, liver.cfg
        self.probabilities = liver.probabilities
        self.lesion_rule = LesionRule(**meta.get("lesions", {}))
        # Calibrated on the cascade's own certainty (stage 2's, inside the liver box); a bundle
        # never takes stage 1's (``write_cascade``).
        self.min_certainty = model_certainty_limit(meta)

    def segment(
        self,
        hu: np.ndarray,
        *,
        spacing: tuple[float, float, float] | None = None,
        keep_probs: bool = False,
        postprocess: bool = True,
        lesion_rule: LesionRule | None = None,
    ) -> Segmentation:
        """As ``Segmenter.segment``: stage 1 (post-processed) places the box and, where stage 2
        was trained so, shifts its HU to stage 1's liver; stage 2's labels and probabilities
        fill the box; outside it labels and probabilities are background.
        Post-processing then runs on the composed labels: stage 2's components outside stage
        1's liver go, then the Segmenter's (liver components, the lesion rule). Probabilities
        are the stages' own, before post-processing (as the Segmenter's)."""
        first = self.liver.segment(hu)
        cfg = self.tumour.cfg
        box = liver_box(first.labels, cfg.roi_margin, cfg.roi_z_margin)
        labels, certainty = np.zeros(hu.shape, np.uint8), None
        probs = None
        if keep_probs:
            probs = np.zeros((3, *hu.shape), np.float16)
            probs[0] = 1
        if box is not None:
            crop = hu[box]
            if cfg.roi_liver_shift:  # as its shards were made, with stage 1's liver
                crop = shift_to_liver(crop, first.labels[box])
            second = self.tumour.segment(crop, keep_probs=keep_probs, postprocess=False)
            labels[box], certainty = second.labels, second.certainty
            if probs is not None:
                probs[(slice(None), *box)] = second.probs
            # Stage 2 saw only the box: stage 1, which saw the whole slice, says which of its
            # components are liver (a separate organ of liver-like HU is not).
            if postprocess:
                labels = keep_confirmed_components(labels, first.labels >= 1)
        if postprocess:
            labels = postprocess_labels(labels, spacing, lesion_rule or self.lesion_rule, hu)
        return Segmentation(labels, probs, certainty)


def load_segmenter(uri: str, device: str = "cpu", batch_size: int = 16) -> Segmenter | Cascade:
    """The model of a checkpoint folder: a ``Cascade`` for a bundle, else a ``Segmenter``."""
    liver = Segmenter.from_checkpoint(uri, device, batch_size)
    stages = liver.meta.get("cascade")
    if not stages:
        if liver.cfg.roi:
            raise UsageError(
                f"{uri}: trained on liver-ROI shards, it only works as a cascade's tumour stage; "
                "bundle it with a liver stage (jobs/registry.py bundle)"
            )
        return liver
    tumour = Segmenter.from_checkpoint(storage.join(uri, TUMOUR_STAGE), device, batch_size)
    return Cascade(liver, tumour, liver.meta)


def write_cascade(
    liver: str,
    tumour: str,
    out: str,
    metrics: dict | None = None,
    validation: dict | None = None,
) -> str:
    """Bundle two checkpoints (local or ``s3://``) into the folder ``out``; returns ``out``.

    ``metrics`` and ``validation`` (what they were scored on) should be measured through the
    cascade (``livseg.evaluate.bundle_cascade``); without them the bundle carries neither, so the
    registry refuses it rather than take stage 1's numbers for the cascade's.
    """
    liver_meta = json.loads(storage.read_text(storage.join(liver, "meta.json")))
    tumour_meta = json.loads(storage.read_text(storage.join(tumour, "meta.json")))
    if liver_meta.get("cascade") or tumour_meta.get("cascade"):
        raise UsageError("a stage of a cascade must be a single-stage checkpoint")
    if not tumour_meta["preprocess"]["config"].get("roi"):
        raise UsageError(f"--tumour {tumour}: not trained on ROI shards; preprocess with --roi")
    if liver_meta["preprocess"]["config"].get("roi"):
        raise UsageError(f"--liver {liver}: trained on ROI shards; it must see whole slices")
    for file in STAGE_FILES:
        data = storage.read_bytes(storage.join(tumour, file))
        storage.write_bytes(storage.join(out, TUMOUR_STAGE, file), data)
    # Chosen on stage 1 alone: the bundle gets its own (lesion rule, review limit) or none.
    meta = {k: v for k, v in liver_meta.items()
            if k not in ("lesions", "lesions_choice", "review")}  # fmt: skip
    meta["cascade"] = {"tumour": TUMOUR_STAGE, "tumour_arch": tumour_meta["arch"],
                       "sources": {"liver": liver, "tumour": tumour}}  # fmt: skip
    meta.pop("metrics", None)
    meta.pop("validation", None)
    if metrics is not None:
        meta["metrics"], meta["validation"] = metrics, validation
    model = storage.read_bytes(storage.join(liver, "model.pt"))
    storage.write_bytes(storage.join(out, "model.pt"), model)
    storage.write_bytes(storage.join(out, "meta.json"), json.dumps(meta, indent=2).encode())
    return out
