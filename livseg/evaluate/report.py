"""The evaluation report: Monte-Carlo box plots, confusion matrices, case figures with
contours and the HTML page that shows them with the comparison table."""

from __future__ import annotations

from typing import Any

from livseg.figures import figure_png, pyplot
from livseg.io import storage

BOX_METRICS = (  # (title, per-case metric); boxes show the Monte-Carlo draws of its mean
    ("liver Dice", "liver_dice"),
    ("tumour Dice", "tumour_dice"),
    ("liver ASSD (mm)", "liver_assd"),
    ("tumour detection F1", "tumour_f1"),
)
TABLE_METRICS = BOX_METRICS + (  # the comparison table adds pooled and distance scores
    ("liver global Dice", "liver_dice_global"),
    ("tumour global Dice", "tumour_dice_global"),
    ("liver HD95 (mm)", "liver_hd95"),
    ("tumour recall", "tumour_recall"),
    ("burden error", "burden_error"),
)
CLASS_NAMES = ("background", "liver", "tumour")


def draw_key(draws: dict[str, Any], metric: str, stat: str = "mean") -> str | None:
    """The Monte-Carlo key holding ``stat`` of ``metric`` (summary keys are nested names)."""
    exact = [k for k in draws if k.split(".") in ([metric, stat], [stat, metric])]
    if exact:
        return exact[0]
    return next((k for k in draws if k in (f"{metric}_{stat}", metric)), None)


def boxplots_png(draws: dict[str, dict[str, Any]]) -> bytes:
    """Box plots of the Monte-Carlo distribution of each headline mean, one box per model."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(BOX_METRICS), figsize=(4 * len(BOX_METRICS), 4))
    labels = list(draws)
    for ax, (title, metric) in zip(axes, BOX_METRICS, strict=True):
        data = []
        for label in labels:
            key = draw_key(draws[label], metric)
            values = draws[label][key] if key else []
            data.append([v for v in values if v == v])  # drop NaN
        ax.boxplot(data, tick_labels=labels, showmeans=True)
        ax.set_title(title)
        ax.tick_params(axis="x", rotation=20)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle("Monte-Carlo resampling of test cases (mean per iteration)")
    return figure_png(fig)


def confusion_png(confusions: dict[str, Any]) -> bytes:
    """Voxel confusion matrices in percent of each reference class (rows), one per model."""
    import numpy as np

    plt = pyplot()
    fig, axes = plt.subplots(1, len(confusions), figsize=(4.2 * len(confusions), 3.8))
    axes = np.atleast_1d(axes)
    for ax, (label, conf) in zip(axes, confusions.items(), strict=True):
        conf = np.asarray(conf, np.float64)
        pct = 100 * conf / np.maximum(conf.sum(axis=1, keepdims=True), 1)
        ax.imshow(pct, cmap="Blues", vmin=0, vmax=100)
        for i in range(3):
            for j in range(3):
                color = "white" if pct[i, j] > 60 else "black"
                ax.text(j, i, f"{pct[i, j]:.1f}%", ha="center", va="center", color=color)
        ax.set_xticks(range(3), CLASS_NAMES)
        ax.set_yticks(range(3), CLASS_NAMES)
        ax.set_xlabel("prediction")
        ax.set_ylabel("reference")
        ax.set_title(label)
    return figure_png(fig)


def case_png(figure: dict[str, Any], title: str) -> bytes:
    """CT slice with reference (green) and predicted (red) contours and tumour boxes.

    Radiological display: anterior up, the patient's right on the viewer's left.
    """
    import matplotlib.patches as patches
    import numpy as np
    from scipy import ndimage

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    image = np.asarray(figure["image"], np.float32)
    ax.imshow(image.T, cmap="gray", origin="lower", aspect=figure["aspect"])
    for key, color, style in (("ref", "lime", "--"), ("pred", "red", "-")):
        mask = np.asarray(figure[key])
        for level, width in ((0.5, 1.2), (1.5, 1.8)):  # liver outline, tumour outline
            if (mask > level).any():
                ax.contour(mask.T > level, levels=[0.5], colors=color, linewidths=width)
        lesions, _ = ndimage.label(mask == 2)
        for box in ndimage.find_objects(lesions):
            (x0, x1), (y0, y1) = (box[0].start, box[0].stop), (box[1].start, box[1].stop)
            ax.add_patch(patches.Rectangle(
                (x0 - 1, y0 - 1), x1 - x0 + 1, y1 - y0 + 1,
                fill=False, edgecolor=color, linestyle=style, linewidth=1,
            ))  # fmt: skip
    ax.invert_xaxis()
    ax.set_axis_off()
    ax.set_title(f"{title}  (slice z={figure['z']}; green reference, red prediction)", fontsize=9)
    return figure_png(fig)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    from html import escape

    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(_fmt(v))}</td>" for v in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def evaluation_report(out: str, results: list, summary: dict[str, Any], draws: dict) -> str:
    """Write ``report.html`` and its PNGs into ``out``; return the report's URI."""
    from html import escape

    images: dict[str, bytes] = {}
    sections = []
    models = summary["models"]
    header = ["model", "cases", "failed"]
    for title, _ in TABLE_METRICS:
        header.append(f"{title} [95 % CI]")
    rows = []
    for label, info in models.items():
        row = [label, info["cases"], len(info["failed"])]
        for _, metric in TABLE_METRICS:
            key = draw_key(info["monte_carlo"], metric)
            mc = info["monte_carlo"].get(key) if key else None
            if mc and mc["mean"] is not None:
                lo, hi = mc["ci95"]
                row.append(f"{mc['mean']:.3f} [{lo:.3f}, {hi:.3f}]")
            else:
                row.append(None)
        rows.append(row)
    sections.append("<h2>Comparison</h2>" + _table(header, rows))
    if draws and any(draws.values()):
        images["boxplots.png"] = boxplots_png(draws)
        sections.append(
            f"<h2>Monte-Carlo estimates ({summary['mc_iterations']} iterations)</h2>"
            '<img src="boxplots.png" alt="box plots">'
        )
    confusions = {}
    for result in results:
        ok = [r for r in result.rows if r["status"] == "ok"]
        if ok:
            confusions[result.label] = [
                [sum(r[f"conf_{i}{j}"] for r in ok) for j in range(3)] for i in range(3)
            ]
    if confusions:
        images["confusion.png"] = confusion_png(confusions)
        sections.append(
            "<h2>Voxel confusion (% of reference class)</h2>"
            '<img src="confusion.png" alt="confusion matrices">'
        )
    for n, result in enumerate(results):
        parts = [
            f"<h2>{escape(result.label)}</h2><p>source: <code>{escape(result.source)}</code></p>"
        ]
        if result.curves:
            images[f"curves-{n}.png"] = result.curves
            parts.append(f'<h3>Training curves</h3><img src="curves-{n}.png" alt="curves">')
        for figure in result.figures:
            name = f"case-{n}-{figure['case_id']}.png"
            images[name] = case_png(figure, f"{result.label}, case {figure['case_id']}")
            parts.append(f'<img src="{name}" alt="case {figure["case_id"]}">')
        cols = ["case", "status", "liver_dice", "tumour_dice", "liver_assd", "liver_hd95",
                "tumour_tp", "tumour_fp", "tumour_fn", "burden_error", "error"]  # fmt: skip
        parts.append(_table(cols, [[r.get(c) for c in cols] for r in result.rows]))
        sections.append("".join(parts))
    for name, data in images.items():
        storage.write_bytes(storage.join(out, name), data)
    html = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>livseg evaluation</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}img{{max-width:100%}}</style>
</head><body><h1>livseg evaluation</h1>
<p>Metrics follow the LiTS challenge (liver = labels 1+2, tumour = label 2; distances in mm on
each case's own voxel grid). Means over cases; tumour metrics over cases whose reference has
tumour. Intervals: 2.5–97.5 % of {summary["mc_iterations"]} Monte-Carlo resamplings of the cases
(seed {summary["seed"]}).</p>
{"".join(sections)}
</body></html>
"""
    uri = storage.join(out, "report.html")
    storage.write_text(uri, html)
    return uri
