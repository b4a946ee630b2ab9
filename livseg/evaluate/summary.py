"""What an evaluation writes: ``per_case.csv``, ``summary.json`` (with Monte-Carlo intervals),
``comparison.csv`` (one row per model), ``report.html``; and the tables it prints."""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

import numpy as np

from livseg.evaluate.cases import ModelResult
from livseg.evaluate.lits import summarise
from livseg.evaluate.montecarlo import interval, monte_carlo
from livseg.io import storage


def json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
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
    return json_safe(summary), draws


def write_evaluation(
    results: list[ModelResult], out: str, mc: int = 100, seed: int = 0
) -> dict[str, Any]:
    """Write ``per_case.csv``, ``summary.json``, ``comparison.csv`` and ``report.html`` (+ PNGs)
    into ``out``; return the summary."""
    from livseg.evaluate.report import evaluation_report

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
    width = max([16, *(len(row["model"]) for row in comparison_rows(summary))])
    lines = [f"{'model':{width}s} {'cases':>5s} " + " ".join(f"{h:>8s}" for h in heads)]
    for row in comparison_rows(summary):
        cells = ["       –" if row[k] is None else f"{row[k]:8.3f}" for k in COMPARISON_COLUMNS]
        lines.append(f"{row['model']:{width}s} {row['cases']:>5d} " + " ".join(cells))
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
