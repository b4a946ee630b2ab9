"""Evaluation runs: score mask folders or models case by case as Ray tasks.

Two sources of predictions, one output format:

- ``score_mask_folders(pred, ref)``: predicted masks matched to reference masks by case number
  (``[test-]segmentation-N.nii[.gz]``), any orientation; a drop-in for the LiTS scorer;
- ``score_models(models, data)``: each checkpoint (or registry entry) segments the test split
  of a shard set (its raw cases, on their original grids) or every case of a raw LiTS folder.

Every case is scored on its original voxel grid with its own spacing (``lits.score_case``);
a case that cannot be read or whose masks are on different grids becomes an ``error`` row
naming the files and never stops the others; ``summary.write_evaluation`` writes the results.
"""

from __future__ import annotations

import math
import re
from typing import Any

from livseg.errors import UsageError
from livseg.evaluate.cases import (
    ModelResult,
    error_row,
    score_mask_pair,
    score_model_case,
)
from livseg.io import VOLUME_RE, Case, discover_cases, storage

MASK_NAME_RE = re.compile(r"^(?:test-)?segmentation-(\d+)\.nii(\.gz)?$", re.IGNORECASE)


def submit_tasks(fn, arg_tuples: list[tuple]) -> list:
    """``fn(*args)`` for each tuple as Ray tasks (1 CPU each); their object refs, in order."""
    import ray

    from livseg.runtime import init_ray

    init_ray()
    remote = ray.remote(num_cpus=1, max_retries=1)(fn)
    return [remote.remote(*args) for args in arg_tuples]


def collect_tasks(refs: list, names: list[tuple[int, str]]) -> list[dict]:
    """The results of ``submit_tasks``' refs, in order. A task lost to the system (worker
    crash, node loss) after its retry becomes an error row."""
    import ray

    out = []
    for ref, (case_id, name) in zip(refs, names, strict=True):
        try:
            out.append(ray.get(ref))
        except Exception as exc:  # noqa: BLE001 - system failure of one case
            out.append({"row": error_row(case_id, name, exc), "figure": None})
    return out


def run_tasks(fn, arg_tuples: list[tuple], names: list[tuple[int, str]]) -> list[dict]:
    """``fn(*args)`` for each tuple as Ray tasks (1 CPU each), results in input order."""
    return collect_tasks(submit_tasks(fn, arg_tuples), names)


def pick_figures(results: list[dict], n: int = 3) -> list[dict]:
    """Best, median and worst case by tumour Dice (liver Dice where no tumour)."""
    scored = []
    for r in results:
        if r["figure"] is None:
            continue
        row = r["row"]
        value = row.get("tumour_dice") if row.get("tumour_ml_ref", 0) > 0 else None
        value = row.get("liver_dice") if value is None or math.isnan(value) else value
        scored.append((value, r["figure"]))
    scored.sort(key=lambda item: item[0])
    if len(scored) <= n:
        return [f for _, f in scored]
    picks = [0, len(scored) // 2, len(scored) - 1]
    return [scored[i][1] for i in picks]


def match_masks(pred_dir: str, ref_dir: str) -> list[tuple[int, str | None, str, str | None]]:
    """(case number, predicted mask or None, reference mask, CT volume or None) for every
    reference mask; the CT (``volume-N.nii[.gz]`` below ``ref_dir``) only feeds the figures."""

    def by_case(root: str, flag: str, pattern=MASK_NAME_RE) -> dict[int, str]:
        try:
            files = storage.list_files(root)
        except FileNotFoundError as exc:
            raise UsageError(f"{flag} {root}: no such folder") from exc
        found: dict[int, str] = {}
        for uri, _ in files:
            if m := pattern.match(storage.basename(uri)):
                found.setdefault(int(m.group(1)), uri)
        return found

    refs, preds = by_case(ref_dir, "--ref"), by_case(pred_dir, "--pred")
    if not refs:
        raise UsageError(f"--ref {ref_dir}: no segmentation-N.nii[.gz] reference masks found")
    images = by_case(ref_dir, "--ref", VOLUME_RE)
    return [(c, preds.get(c), refs[c], images.get(c)) for c in sorted(refs)]


def score_mask_folders(pred_dir: str, ref_dir: str) -> ModelResult:
    """Score every reference mask in ``ref_dir`` against ``pred_dir`` (Ray tasks)."""
    pairs = match_masks(pred_dir, ref_dir)
    results = run_tasks(score_mask_pair, pairs, [(c, storage.basename(r)) for c, _, r, _ in pairs])
    rows = [r["row"] for r in results]
    return ModelResult("predictions", pred_dir, rows, pick_figures(results))


def evaluation_cases(data: str, split: str = "test") -> list[Case]:
    """The cases to score: a shard set's ``split`` (its raw input) or every case of a folder."""
    from livseg.data import read_record

    if not storage.exists(storage.join(data, "preprocess.json")):
        return discover_cases(data)
    record = read_record(data)
    if split not in record["splits"]:
        raise UsageError(f"--split {split}: use one of {sorted(record['splits'])}")
    ids = set(record["splits"][split]["case_ids"])
    if not ids:
        raise UsageError(f"{data}: split {split!r} has no cases; score another split")
    try:
        cases = [c for c in discover_cases(record["input"]) if c.case_id in ids]
    except ValueError as exc:
        raise UsageError(
            f"{data}: the raw cases it was made from ({record['input']}) are not readable "
            f"({exc}); pass the raw LiTS folder as --data"
        ) from exc
    missing = ids - {c.case_id for c in cases}
    if missing:
        raise UsageError(
            f"{record['input']}: cases {sorted(missing)} of split {split!r} are missing; "
            "pass the raw LiTS folder as --data"
        )
    return cases


def training_curves(meta: dict[str, Any]) -> bytes | None:
    """The training run's ``curves.png`` (``<storage>/<name>/<arch>/``), if it is there."""
    train = meta.get("train", {})
    if not train.get("storage") or not train.get("name"):
        return None
    try:
        uri = storage.join(train["storage"], train["name"], meta["arch"], "curves.png")
        return storage.read_bytes(uri) if storage.exists(uri) else None
    except OSError:  # storage of another machine or bucket: the report goes without curves
        return None


def score_models(
    models: list[str], data: str, split: str = "test", labels: list[str] | None = None
) -> list[ModelResult]:
    """Segment and score ``data``'s cases with each model; one result per model, labelled by
    ``labels`` or by architecture (``unet``, ``unet'`` for a second one)."""
    from livseg.registry import resolve_checkpoint
    from livseg.train import read_meta

    cases = evaluation_cases(data, split)
    items = [
        {"case_id": c.case_id, "image_uri": c.image_uri, "mask_uri": c.mask_uri or ""}
        for c in cases
    ]
    names = [(c.case_id, c.filename) for c in cases]
    # Every model's cases are submitted before any is awaited: the next model's cases fill
    # the CPUs that the last few cases of one model would leave idle.
    submitted, used = [], set()
    for n, uri in enumerate(models):
        checkpoint = resolve_checkpoint(uri)
        meta = read_meta(checkpoint)
        label = labels[n] if labels else meta["arch"]
        while label in used:
            label += "'"
        used.add(label)
        refs = submit_tasks(score_model_case, [(checkpoint, i) for i in items])
        submitted.append((label, checkpoint, meta, refs))
    out = []
    for label, checkpoint, meta, refs in submitted:
        results = collect_tasks(refs, names)
        train = meta.get("train", {})
        info = {
            "arch": meta["arch"],
            "loss": {k: train.get(k) for k in ("dice", "focal", "gamma")},
            "val_metrics": {
                k: v for k, v in meta.get("metrics", {}).items() if k.startswith("val_")
            },
        }
        rows = [r["row"] for r in results]
        out.append(
            ModelResult(label, checkpoint, rows, pick_figures(results), training_curves(meta), info)
        )
    return out


# ---------------------------------------------------------------------------- summaries


def validation_metrics(checkpoint: str, data: str) -> tuple[dict[str, float], dict[str, Any]]:
    """(``val_liver_dice``, ``val_tumour_dice``, ``val_score``; the validation record they were
    scored on) of a model measured through its Segmenter on the validation split's original
    grids. Every validation case must be scored: a failed one is an error, not a smaller set."""
    from livseg.data import read_record
    from livseg.evaluate.lits import summarise
    from livseg.train import validation_score

    rows = score_models([checkpoint], data, "val")[0].rows
    failed = [f"{r['case']}: {r['error']}" for r in rows if r["status"] != "ok"]
    if failed or not rows:
        raise ValueError(f"{checkpoint} could not score every validation case of {data}: {failed}")
    summary = summarise(rows)
    metrics = {"val_liver_dice": summary["liver_dice_mean"],
               "val_tumour_dice": summary["tumour_dice_mean"]}  # fmt: skip
    validation = {"data": read_record(data).get("fingerprint"), "split": "val",
                  "case_ids": sorted(r["case_id"] for r in rows), "grid": "original"}  # fmt: skip
    return {**metrics, "val_score": validation_score(metrics)}, validation


def bundle_cascade(liver: str, tumour: str, data: str, out: str) -> dict[str, float]:
    """Write the cascade of two checkpoints to ``out`` with its validation metrics measured
    through it on ``data``'s validation cases (``validation_metrics``); returns the metrics.
    Until they are in, the bundle has no metrics, so an interrupted run cannot be registered."""
    from livseg.inference import write_cascade

    write_cascade(liver, tumour, out)
    metrics, validation = validation_metrics(out, data)
    write_cascade(liver, tumour, out, metrics=metrics, validation=validation)
    return metrics
