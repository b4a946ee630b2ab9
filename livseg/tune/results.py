"""A sweep's results: one row per trial, ``sweep.csv`` and ``sweep.png``, the best trial."""

from __future__ import annotations

import csv
import io
import math
from typing import Any

from livseg.figures import figure_png, pyplot
from livseg.io import storage
from livseg.train import SCORE_METRIC as METRIC
from livseg.tune.space import trial_config

COLUMNS = (
    "trial_id", "dice", "focal", "gamma", "lr", "val_tumour_dice", "val_liver_dice",
    "val_score", "best_epoch", "epochs", "stopped_early", "status", "checkpoint",
)  # fmt: skip


def trial_rows(grid, max_epochs: int, storage_root: str) -> list[dict[str, Any]]:
    """One row per trial: its values, best validation epoch, epochs run, early stop, checkpoint."""
    from livseg.train import checkpoint_uri

    rows = []
    for result in grid:
        trial_id = storage.basename(result.path)
        cfg = trial_config(result.config, trial_id)
        frame = result.metrics_dataframe
        history = [] if frame is None else frame.to_dict("records")
        history = [h for h in history if METRIC in h and not _nan(h[METRIC])]
        # Ties go to the later epoch, as Train's checkpoint retention keeps the later one.
        best = max(history, key=lambda h: (h[METRIC], h["epoch"]), default={})
        epochs = max((int(h["epoch"]) for h in history), default=0)
        path = best.get("checkpoint_path")
        rows.append({
            "trial_id": trial_id, "dice": cfg.dice, "focal": cfg.focal, "gamma": cfg.gamma,
            "lr": cfg.lr, "val_tumour_dice": best.get("val_tumour_dice", math.nan),
            "val_liver_dice": best.get("val_liver_dice", math.nan),
            "val_score": best.get(METRIC, math.nan), "best_epoch": best.get("epoch", 0),
            "epochs": epochs,
            # Tune marks a trial its scheduler stopped "done" too: tell by the epochs it ran.
            "stopped_early": result.error is None and 0 < epochs < max_epochs,
            "status": "error" if result.error else "ok",
            "checkpoint": checkpoint_uri(path, storage_root) if isinstance(path, str) else "",
        })  # fmt: skip
    return sorted(rows, key=lambda r: r["trial_id"])


def _nan(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def write_table(rows: list[dict[str, Any]], folder: str, title: str) -> None:
    """``sweep.csv`` (one row per trial) and ``sweep.png`` into ``folder``."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    storage.write_text(storage.join(folder, "sweep.csv"), out.getvalue())
    storage.write_bytes(storage.join(folder, "sweep.png"), sweep_png(rows, title))


def sweep_png(rows: list[dict[str, Any]], title: str) -> bytes:
    """Validation tumour Dice (of each trial's best epoch) against the Dice weight, coloured by
    focal gamma; hollow: stopped early; star: best trial. Where no validation case has tumour
    the validation score (liver Dice then) is plotted instead. PNG bytes."""
    key = "val_tumour_dice" if any(not _nan(r["val_tumour_dice"]) for r in rows) else METRIC
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    gammas = sorted({r["gamma"] for r in rows})
    for colour, gamma in zip(plt.cm.tab10.colors, gammas, strict=False):
        for early in (False, True):
            sel = [r for r in rows if r["gamma"] == gamma and r["stopped_early"] == early]
            label = f"γ = {gamma:g}" + (" (stopped early)" if early else "")
            face = "none" if early else colour
            if sel:
                x, y = [r["dice"] for r in sel], [r[key] for r in sel]
                ax.scatter(x, y, s=60, facecolors=face, edgecolors=colour, label=label)
    scored = [r for r in rows if not _nan(r[METRIC])]
    if scored:
        best = max(scored, key=lambda r: r[METRIC])
        ax.scatter(best["dice"], best[key], marker="*", s=250, c="gold", edgecolors="black",
                   zorder=3, label="best (by validation score)")  # fmt: skip
    ax.set_xlim(-0.05, 1.05)
    ax.set_xlabel("Dice weight (focal = 1 − Dice)")
    ax.set_ylabel(
        "validation tumour Dice" if key != METRIC else "validation score (no tumour in val)"
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    return figure_png(fig)


def register_best(best: dict[str, Any], sweep_name: str, root: str, model_name: str) -> dict:
    """Register the best trial's checkpoint; promoted when it beats ``current`` on val_score."""
    from livseg.registry import register  # noqa: I001

    parent = {"sweep": sweep_name, "trial": best["trial_id"]}
    return register(root, model_name, best["checkpoint"], metric=METRIC, parent=parent)


def format_table(rows: list[dict[str, Any]]) -> str:
    """The sweep as an aligned text table, one row per trial, best validation score first."""
    head = f"{'trial':12s} {'dice':>5s} {'focal':>5s} {'gamma':>5s} {'lr':>8s} {'liver':>6s} "
    lines = [head + f"{'tumour':>6s} {'score':>6s} {'epochs':>6s}  status"]
    for r in sorted(rows, key=lambda r: -r["val_score"] if not _nan(r["val_score"]) else 1):
        cells = [_cell(r[k]) for k in ("val_liver_dice", "val_tumour_dice", "val_score")]
        status = "stopped early" if r["stopped_early"] else r["status"]
        lines.append(
            f"{r['trial_id']:12s} {r['dice']:5.2f} {r['focal']:5.2f} {r['gamma']:5g} "
            f"{r['lr']:8.2e} {cells[0]:>6s} {cells[1]:>6s} {cells[2]:>6s} {r['epochs']:>6d}  "
            f"{status}"
        )
    return "\n".join(lines)


def _cell(value: float) -> str:
    return "–" if _nan(value) else f"{value:.3f}"


def format_best(best: dict[str, Any]) -> str:
    """The best trial in one line."""
    return (
        f"best trial {best['trial_id']}: dice={best['dice']:.3f} focal={best['focal']:.3f} "
        f"gamma={best['gamma']:g} lr={best['lr']:.2e}; val tumour Dice "
        f"{best['val_tumour_dice']:.3f}, liver Dice {best['val_liver_dice']:.3f} "
        f"(epoch {best['best_epoch']}); checkpoint {best['checkpoint']}"
    )
