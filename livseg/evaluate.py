"""Evaluation: score mask folders or models case by case (Ray tasks), then summarise.

Two sources of predictions, one output format:

- ``score_mask_folders(pred, ref)``: predicted masks matched to reference masks by case number
  (``[test-]segmentation-N.nii[.gz]``), any orientation; a drop-in for the LiTS scorer;
- ``score_models(models, data)``: each checkpoint (or registry entry) segments the test split
  of a shard set (its raw cases, on their original grids) or every case of a raw LiTS folder.

Every case is scored on its original voxel grid with its own spacing (``metrics.score_case``);
a case that cannot be read or whose masks are on different grids becomes an ``error`` row
naming the files and never stops the others. ``write_evaluation`` then writes
``per_case.csv``, ``summary.json`` (with Monte-Carlo intervals), ``comparison.csv`` (one row
per model) and ``report.html``.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from livseg import storage
from livseg.dataset import VOLUME_RE, Case, discover_cases
from livseg.metrics import score_case, summarise
from livseg.volumes import VolumeError, read_case, read_nifti

MASK_NAME_RE = re.compile(r"^(?:test-)?segmentation-(\d+)\.nii(\.gz)?$", re.IGNORECASE)
FIGURE_SIZE = 256  # case figures are downsampled to at most this many pixels a side
AFFINE_TOLERANCE_MM = 0.01  # headers re-saved by other tools differ by float noise only
HEADLINE = (
    "liver_dice", "tumour_dice", "liver_assd", "tumour_assd", "liver_hd95", "liver_rvd",
    "tumour_f1",
)  # fmt: skip


@dataclass
class ModelResult:
    """Per-case rows (``status`` ok/error) and a few case figures of one model or folder."""

    label: str
    source: str
    rows: list[dict[str, Any]]
    figures: list[dict[str, Any]] = field(default_factory=list)
    curves: bytes | None = None  # the training run's curves.png, when it can be found
    info: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------- per case (pure)


def confusion3(pred: np.ndarray, ref: np.ndarray) -> list[int]:
    """3×3 voxel confusion (rows = reference 0/1/2, columns = prediction), flattened."""
    idx = np.minimum(ref, 2).astype(np.int64).ravel() * 3 + np.minimum(pred, 2).ravel()
    return np.bincount(idx, minlength=9).tolist()


def figure_slice(
    hu: np.ndarray | None, ref: np.ndarray, pred: np.ndarray, spacing: tuple[float, ...]
) -> dict[str, Any]:
    """The axial slice that shows most reference tumour (else liver), small enough for a report.

    Returns ``image`` (x, y) windowed HU float16 (zeros without a CT), ``ref``/``pred`` (x, y)
    uint8, ``z`` and the displayed pixel aspect.
    """
    area = (ref == 2).sum(axis=(0, 1))
    if not area.any():
        area = (ref >= 1).sum(axis=(0, 1)) + (pred >= 1).sum(axis=(0, 1))
    z = int(np.argmax(area))
    step = max(1, math.ceil(max(ref.shape[:2]) / FIGURE_SIZE))
    image = np.zeros(ref.shape[:2], np.float32) if hu is None else np.clip(hu[:, :, z], -200, 250)
    return {
        "image": image[::step, ::step].astype(np.float16),
        "ref": ref[::step, ::step, z].copy(),
        "pred": pred[::step, ::step, z].copy(),
        "z": z,
        "aspect": float(spacing[1] / spacing[0]),
    }


def _row(case_id: int, name: str, pred, ref, spacing, probs=None) -> dict[str, Any]:
    row = {"case_id": case_id, "case": name, "status": "ok", "error": ""}
    row["spacing"] = "x".join(f"{s:.3g}" for s in spacing)
    row.update(score_case(pred, ref, spacing, probs))
    row.update({f"conf_{i // 3}{i % 3}": v for i, v in enumerate(confusion3(pred, ref))})
    return row


def _error_row(case_id: int, name: str, exc: BaseException) -> dict[str, Any]:
    text = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
    return {"case_id": case_id, "case": name, "status": "error", "error": text}


def _figure_ct(image_uri: str | None, ref) -> np.ndarray | None:
    """The CT beside a reference mask, for figures only (None when absent or on another grid)."""
    if not image_uri:
        return None
    try:
        ct = read_nifti(image_uri)
    except VolumeError:
        return None
    return ct.array if ct.array.shape == ref.array.shape else None


def score_mask_pair(
    case_id: int, pred_uri: str | None, ref_uri: str, image_uri: str | None = None
) -> dict[str, Any]:
    """Score one predicted mask file against its reference; never raises (error row instead).

    ``image_uri``: the case's CT, only used to draw the case figure.
    """
    started = time.time()
    name = storage.basename(ref_uri)
    try:
        if pred_uri is None:
            raise VolumeError(f"{ref_uri}: no predicted segmentation-{case_id} mask found")
        ref = read_nifti(ref_uri, labels=True)
        pred = read_nifti(pred_uri, labels=True)
        same_grid = pred.array.shape == ref.array.shape and np.allclose(
            pred.affine, ref.affine, rtol=0, atol=AFFINE_TOLERANCE_MM
        )
        if not same_grid:
            raise VolumeError(
                f"{pred_uri} (shape {pred.source_shape}) and {ref_uri} (shape "
                f"{ref.source_shape}) are on different voxel grids; resample the prediction "
                "onto the reference image's grid"
            )
        row = _row(case_id, name, pred.array, ref.array, ref.spacing)
        hu = _figure_ct(image_uri, ref)
        figure = figure_slice(hu, ref.array, pred.array, ref.spacing)
    except Exception as exc:  # noqa: BLE001 - one bad case must never stop the batch
        return {"row": _error_row(case_id, name, exc), "figure": None}
    row["seconds"] = round(time.time() - started, 2)
    return {"row": row, "figure": {"case_id": case_id, **figure}}


@functools.lru_cache(maxsize=2)
def _segmenter(checkpoint: str):
    # Ray reuses worker processes: the model loads once per worker, not once per case.
    from livseg.inference import Segmenter

    return Segmenter.from_checkpoint(checkpoint)


def score_model_case(checkpoint: str, case: dict[str, Any]) -> dict[str, Any]:
    """Segment one raw case with ``checkpoint`` and score it; never raises."""
    started = time.time()
    name = storage.basename(case["image_uri"])
    try:
        if not case["mask_uri"]:
            raise VolumeError(f"{case['image_uri']}: no segmentation-{case['case_id']} mask")
        volume, ref = read_case(case["image_uri"], case["mask_uri"])
        result = _segmenter(checkpoint).segment(volume.array, keep_probs=True)
        pred, probs = result.labels, result.probs
        row = _row(case["case_id"], name, pred, ref, volume.spacing, probs)
        figure = figure_slice(volume.array, ref, pred, volume.spacing)
    except Exception as exc:  # noqa: BLE001 - one bad case must never stop the batch
        return {"row": _error_row(case["case_id"], name, exc), "figure": None}
    row["seconds"] = round(time.time() - started, 2)
    return {"row": row, "figure": {"case_id": case["case_id"], **figure}}


# ---------------------------------------------------------------------------- fan-out (Ray)


def _run_tasks(fn, arg_tuples: list[tuple], names: list[tuple[int, str]]) -> list[dict]:
    """``fn(*args)`` for each tuple as Ray tasks (1 CPU each), results in input order.

    A task lost to the system (worker crash, node loss) after its retry becomes an error row.
    """
    import ray

    from livseg.runtime import init_ray

    init_ray()
    remote = ray.remote(num_cpus=1, max_retries=1)(fn)
    refs = [remote.remote(*args) for args in arg_tuples]
    out = []
    for ref, (case_id, name) in zip(refs, names, strict=True):
        try:
            out.append(ray.get(ref))
        except Exception as exc:  # noqa: BLE001 - system failure of one case
            out.append({"row": _error_row(case_id, name, exc), "figure": None})
    return out


def _pick_figures(results: list[dict], n: int = 3) -> list[dict]:
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
            raise ValueError(f"{flag} {root}: no such folder") from exc
        found: dict[int, str] = {}
        for uri, _ in files:
            if m := pattern.match(storage.basename(uri)):
                found.setdefault(int(m.group(1)), uri)
        return found

    refs, preds = by_case(ref_dir, "--ref"), by_case(pred_dir, "--pred")
    if not refs:
        raise ValueError(f"--ref {ref_dir}: no segmentation-N.nii[.gz] reference masks found")
    images = by_case(ref_dir, "--ref", VOLUME_RE)
    return [(c, preds.get(c), refs[c], images.get(c)) for c in sorted(refs)]


def score_mask_folders(pred_dir: str, ref_dir: str) -> ModelResult:
    """Score every reference mask in ``ref_dir`` against ``pred_dir`` (Ray tasks)."""
    pairs = match_masks(pred_dir, ref_dir)
    results = _run_tasks(score_mask_pair, pairs, [(c, storage.basename(r)) for c, _, r, _ in pairs])
    rows = [r["row"] for r in results]
    return ModelResult("predictions", pred_dir, rows, _pick_figures(results))


def evaluation_cases(data: str, split: str = "test") -> list[Case]:
    """The cases to score: a shard set's ``split`` (its raw input) or every case of a folder."""
    from livseg.shards import read_record

    if not storage.exists(storage.join(data, "preprocess.json")):
        return discover_cases(data)
    record = read_record(data)
    if split not in record["splits"]:
        raise ValueError(f"--split {split}: use one of {sorted(record['splits'])}")
    ids = set(record["splits"][split]["case_ids"])
    if not ids:
        raise ValueError(f"{data}: split {split!r} has no cases; score another split")
    try:
        cases = [c for c in discover_cases(record["input"]) if c.case_id in ids]
    except ValueError as exc:
        raise ValueError(
            f"{data}: the raw cases it was made from ({record['input']}) are not readable "
            f"({exc}); pass the raw LiTS folder as --data"
        ) from exc
    missing = ids - {c.case_id for c in cases}
    if missing:
        raise ValueError(
            f"{record['input']}: cases {sorted(missing)} of split {split!r} are missing; "
            "pass the raw LiTS folder as --data"
        )
    return cases


def resolve_checkpoint(uri: str) -> str:
    """A checkpoint folder as given, or the current version of a registry entry."""
    if storage.exists(storage.join(uri, "meta.json")):
        return uri
    if storage.exists(storage.join(uri, "current.json")):
        from livseg.registry import resolve_model

        parent, name = uri.rstrip("/").rsplit("/", 1)
        return resolve_model(parent, name)
    raise ValueError(
        f"--model {uri}: neither a checkpoint (no meta.json) nor a registry entry "
        "(no current.json); pass a checkpoint folder printed by jobs/train.py"
    )


def _curves(meta: dict[str, Any]) -> bytes | None:
    """The training run's ``curves.png`` (``<storage>/<name>/<arch>/``), if it is there."""
    train = meta.get("train", {})
    if not train.get("storage") or not train.get("name"):
        return None
    try:
        uri = storage.join(train["storage"], train["name"], meta["arch"], "curves.png")
        return storage.read_bytes(uri) if storage.exists(uri) else None
    except OSError:  # storage of another machine or bucket: the report goes without curves
        return None


def score_models(models: list[str], data: str, split: str = "test") -> list[ModelResult]:
    """Segment and score ``data``'s cases with each model; one result per model."""
    from livseg.checkpoint import read_meta

    cases = evaluation_cases(data, split)
    items = [
        {"case_id": c.case_id, "image_uri": c.image_uri, "mask_uri": c.mask_uri or ""}
        for c in cases
    ]
    names = [(c.case_id, c.filename) for c in cases]
    out, labels = [], set()
    for uri in models:
        checkpoint = resolve_checkpoint(uri)
        meta = read_meta(checkpoint)
        label = meta["arch"]
        while label in labels:
            label += "'"
        labels.add(label)
        results = _run_tasks(score_model_case, [(checkpoint, i) for i in items], names)
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
            ModelResult(label, checkpoint, rows, _pick_figures(results), _curves(meta), info)
        )
    return out


# ---------------------------------------------------------------------------- summaries


def _flatten(value: Any, prefix: str = "") -> dict[str, float]:
    """Nested summary dict → flat ``{"a.b": number}`` (non-numbers dropped)."""
    if isinstance(value, dict):
        flat: dict[str, float] = {}
        for k, v in value.items():
            flat.update(_flatten(v, f"{prefix}{k}."))
        return flat
    if isinstance(value, bool | int | float | np.floating | np.integer):
        return {prefix.rstrip("."): float(value)}
    return {}


def monte_carlo(
    rows: list[dict[str, Any]], iterations: int, seed: int = 0
) -> dict[str, np.ndarray]:
    """Resample cases with replacement ``iterations`` times; every summary value's draws.

    Deterministic for a seed. Returns metric name → (iterations,) float64.
    """
    if iterations < 1:
        raise ValueError(f"--mc {iterations}: use at least 1 Monte-Carlo iteration")
    ok = [r for r in rows if r["status"] == "ok"]
    if not ok:
        return {}
    rng = np.random.default_rng(seed)
    draws = [
        _flatten(summarise([ok[i] for i in rng.integers(0, len(ok), len(ok))]))
        for _ in range(iterations)
    ]
    keys = list(draws[0])
    return {k: np.array([d.get(k, np.nan) for d in draws], np.float64) for k in keys}


def interval(values: np.ndarray) -> dict[str, float | None]:
    """Mean, median, std and the 95 % percentile interval of Monte-Carlo draws (NaN-aware)."""
    finite = values[np.isfinite(values)]
    if not len(finite):
        return {"mean": None, "median": None, "std": None, "ci95": None}
    lo, hi = np.percentile(finite, [2.5, 97.5])
    return {
        "mean": float(finite.mean()),
        "median": float(np.median(finite)),
        "std": float(finite.std()),
        "ci95": [float(lo), float(hi)],
    }


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def per_case_csv(results: list[ModelResult]) -> str:
    columns = ["model"]
    for result in results:
        for row in result.rows:
            columns += [k for k in row if k not in columns]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns)
    writer.writeheader()
    for result in results:
        writer.writerows({"model": result.label, **row} for row in result.rows)
    return out.getvalue()


def summaries(
    results: list[ModelResult], mc: int, seed: int
) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """(summary.json content, Monte-Carlo draws per model label)."""
    summary: dict[str, Any] = {"mc_iterations": mc, "seed": seed, "models": {}}
    draws = {}
    for result in results:
        ok = [r for r in result.rows if r["status"] == "ok"]
        draws[result.label] = monte_carlo(result.rows, mc, seed)
        summary["models"][result.label] = {
            "source": result.source,
            "cases": len(ok),
            "failed": [
                {"case": r["case"], "error": r["error"]} for r in result.rows if r["status"] != "ok"
            ],
            "summary": summarise(ok) if ok else {},
            "monte_carlo": {k: interval(v) for k, v in draws[result.label].items()},
            **result.info,
        }
    return _json_safe(summary), draws


def write_evaluation(
    results: list[ModelResult], out: str, mc: int = 100, seed: int = 0
) -> dict[str, Any]:
    """Write ``per_case.csv``, ``summary.json``, ``comparison.csv`` and ``report.html`` (+ PNGs)
    into ``out``; return the summary."""
    from livseg.report import evaluation_report

    summary, draws = summaries(results, mc, seed)
    storage.write_text(storage.join(out, "per_case.csv"), per_case_csv(results))
    storage.write_text(storage.join(out, "summary.json"), json.dumps(summary, indent=2))
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=["model", "cases", "failed", *COMPARISON_COLUMNS])
    writer.writeheader()
    writer.writerows(comparison_rows(summary))
    storage.write_text(storage.join(out, "comparison.csv"), table.getvalue())
    evaluation_report(out, results, summary, draws)
    return summary


COMPARISON_COLUMNS = (
    "liver_dice_mean", "tumour_dice_mean", "liver_dice_global", "tumour_dice_global",
    "liver_assd_mean", "liver_hd95_mean", "tumour_recall", "tumour_precision",
)  # fmt: skip


def comparison_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per model: cases scored and the headline means (the study's question)."""
    rows = []
    for label, model in summary["models"].items():
        values = model["summary"]
        row = {"model": label, "cases": model["cases"], "failed": len(model["failed"])}
        row.update({k: values.get(k) for k in COMPARISON_COLUMNS})
        rows.append(row)
    return rows


def format_model_comparison(summary: dict[str, Any]) -> str:
    """The comparison rows as aligned text (``None`` = not defined for these cases)."""
    heads = ["liver", "tumour", "liv-glob", "tum-glob", "ASSD mm", "HD95 mm", "recall", "prec"]
    lines = [f"{'model':16s} {'cases':>5s} " + " ".join(f"{h:>8s}" for h in heads)]
    for row in comparison_rows(summary):
        cells = ["       –" if row[k] is None else f"{row[k]:8.3f}" for k in COMPARISON_COLUMNS]
        lines.append(f"{row['model']:16s} {row['cases']:>5d} " + " ".join(cells))
    return "\n".join(lines)


def case_dice_table(result: ModelResult) -> str:
    """Per-case liver and tumour Dice of one model as aligned text."""
    lines = [f"{result.label}:  {'case':28s} {'liver':>6s} {'tumour':>6s}"]
    for row in result.rows:
        if row["status"] != "ok":
            lines.append(f"  {row['case']:28s}  error: {row['error']}")
            continue
        tumour = row["tumour_dice"] if row.get("tumour_ml_ref", 0) > 0 else float("nan")
        tumour_text = "     –" if math.isnan(tumour) else f"{tumour:6.3f}"
        lines.append(f"  {row['case']:28s} {row['liver_dice']:6.3f} {tumour_text}")
    return "\n".join(lines)
