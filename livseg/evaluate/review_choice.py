"""Calibrating the review flag's confidence limit on the validation split
(``livseg.inference.qa``).

The certainty a model reports (its mean winning softmax probability inside the liver it labels)
depends on the model: how long it trained, its loss weights, its architecture. A fixed limit
flags every study of a less sure model, or none of a surer one. So each model's limit comes from
its own validation cases, on the scale of uncertainty (1 − certainty): a study is flagged when the
model is more than ``FACTOR`` times as uncertain as on its least certain validation case. The
limit stays at most the default ``ReviewLimits.min_certainty`` and at least ``FLOOR`` (a model
unsure of its own validation cases keeps flagging studies rather than never flagging them).

Why a factor, not a quantile: validation sets are small (10 % of the cases; one or two in a small
run), so their lowest certainty is often a typical case. Across 18 clean generated studies one
briefly trained U-Net's uncertainty ranged from 0.022 to 0.078 (median 0.029): 2.7 × its median,
so 4 × leaves clean studies unflagged even when the only validation case is a typical one. The
limit, the certainties behind it and the shard set they came from are recorded in the
checkpoint's ``meta.json`` (``review``); a serving setting still overrides it.
"""

from __future__ import annotations

from typing import Any

from livseg.errors import UsageError
from livseg.evaluate.cases import cached_segmenter, error_row
from livseg.inference import ReviewLimits
from livseg.io import read_volume, storage

FACTOR = 4.0
FLOOR = 0.80


def certainty_limit(
    certainties: list[float],
    default: float = ReviewLimits.min_certainty,
    factor: float = FACTOR,
    floor: float = FLOOR,
) -> float:
    """The review limit of a model whose validation cases scored ``certainties`` (each in
    [0, 1]): ``1 - factor × (1 - min(certainties))``, within [``floor``, ``default``]."""
    if not certainties:
        raise ValueError("no validation certainty: the model labelled no liver in any case")
    return round(min(default, max(floor, 1.0 - factor * (1.0 - min(certainties)))), 4)


def case_certainty(checkpoint: str, case: dict[str, Any]) -> dict[str, Any]:
    """Segment one case's image and return its certainty (None: no liver); never raises."""
    name = storage.basename(case["image_uri"])
    try:
        volume = read_volume(case["image_uri"])
        result = cached_segmenter(checkpoint).segment(volume.array, spacing=volume.spacing)
    except Exception as exc:  # noqa: BLE001 - one bad case must never stop the batch
        return {"row": error_row(case["case_id"], name, exc), "figure": None}
    row = {"case_id": case["case_id"], "case": name, "status": "ok", "error": ""}
    return {"row": {**row, "certainty": result.certainty}, "figure": None}


def _fingerprint(data: str) -> str | None:
    from livseg.data import read_record

    if not storage.exists(storage.join(data, "preprocess.json")):
        return None  # a raw folder: its cases, not a shard set
    return read_record(data).get("fingerprint")


def calibrate_review(checkpoint: str, data: str, split: str = "val") -> dict[str, Any]:
    """Segment ``data``'s ``split`` cases with ``checkpoint`` (Ray tasks, original grids) and
    return ``{"min_certainty", "split", "data", "cases", "certainty"}`` (certainty per case id);
    ``min_certainty`` None when the model labelled no liver in any case."""
    from livseg.evaluate.runner import evaluation_cases, run_tasks

    cases = evaluation_cases(data, split)
    items = [{"case_id": c.case_id, "image_uri": c.image_uri} for c in cases]
    results = run_tasks(case_certainty, [(checkpoint, i) for i in items],
                        [(c.case_id, c.filename) for c in cases])  # fmt: skip
    rows = [r["row"] for r in results]
    ok = [r for r in rows if r["status"] == "ok"]
    if not ok:
        raise UsageError(
            f"{checkpoint}: no {split} case of {data} could be segmented to calibrate the review "
            f"limit; first error: {rows[0]['error'] if rows else 'no cases'}"
        )
    # Rounded before the limit is taken, so the recorded certainties reproduce the limit.
    ok.sort(key=lambda r: r["case_id"])
    scored = {str(r["case_id"]): round(r["certainty"], 4) for r in ok if r["certainty"] is not None}
    limit = None
    if scored:
        limit = certainty_limit(list(scored.values()))
    return {"min_certainty": limit, "split": split, "data": _fingerprint(data),
            "cases": len(scored), "certainty": scored}  # fmt: skip


def calibrate_before_registering(checkpoint: str, data: str) -> str:
    """Calibrate and record ``checkpoint``'s review limit on ``data``'s validation split unless
    it has one from the same shard set (a rerun); one line saying what was done, to print."""
    from livseg.train import read_meta, update_meta

    recorded = read_meta(checkpoint).get("review", {})
    if recorded.get("min_certainty") is not None and recorded.get("data") == _fingerprint(data):
        return f"review limit {recorded['min_certainty']:.3f} (calibrated before)"
    choice = calibrate_review(checkpoint, data, "val")
    if choice["min_certainty"] is None:
        return ("review limit not calibrated: no liver in any validation case; the default "
                "applies")  # fmt: skip
    update_meta(checkpoint, review=choice)
    low = min(choice["certainty"].values())
    return (f"review limit: confidence < {choice['min_certainty']:.3f} is flagged (lowest of "
            f"{choice['cases']} validation cases {low:.3f})")  # fmt: skip
