"""The night's HTML summary for a radiologist: the run's counts, then the studies flagged for
review first (the key slice's thumbnail with liver and tumour contours, the reasons, the
statistics), every other segmented study, and every input that was not segmented with why.

One self-contained page (inline CSS, thumbnails linked by path relative to the page) about this
run's studies, written atomically to ``OUTPUT/summary.html`` at the end of each run.
"""

from __future__ import annotations

from html import escape
from typing import Any

from livseg.io import storage

PAGE = "summary.html"
_STYLE = """
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3}.num{text-align:right}
.flag{display:flex;gap:1em;border:2px solid #c62;padding:.6em;margin:.6em 0;border-radius:4px}
.flag img{width:256px;background:#000}.reason{color:#a30;font-weight:600}
"""


def _link(output: str, uri: str | None) -> str:
    """``uri`` relative to the page when it lies under ``output`` (the folder can be moved)."""
    if not uri:
        return ""
    prefix = output.rstrip("/") + "/"
    return uri[len(prefix) :] if uri.startswith(prefix) else uri


def _number(value: Any, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _flagged(output: str, row: dict[str, Any]) -> str:
    src = escape(_link(output, row.get("thumbnail")), quote=True)
    image = f'<img src="{src}" alt="key slice of {escape(row["key"])}">' if src else ""
    return (
        f'<div class="flag">{image}<div><b>{escape(row["key"])}</b><br>'
        f'<span class="reason">{escape(row["reasons"] or "")}</span><br>'
        f"input: {escape(row['input'])}<br>"
        f"liver {_number(row['liver_ml'])} mL · {row['tumour_count']} tumour(s), "
        f"{_number(row['tumour_ml'])} mL, largest {_number(row['largest_tumour_diameter_mm'])} mm"
        f"<br>confidence {_number(row['confidence'], 3)} · agreement "
        f"{_number(row['agreement'], 3)} · model {escape(str(row['version']))}</div></div>"
    )


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def night_html(
    output: str, summary: dict[str, Any], done: list[dict[str, Any]], failures: list[dict]
) -> str:
    """The page: ``summary`` of this run, ``done`` report rows, ``failures`` rows."""
    counts = summary["counts"]
    flagged = sorted((r for r in done if r["review"]), key=lambda r: r["key"])
    others = sorted((r for r in done if not r["review"]), key=lambda r: r["key"])
    count_rows = [(escape(k.replace("_", " ")), str(v)) for k, v in counts.items()]
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>livseg archive "
        f"{escape(summary['run_id'])}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Archive run {escape(summary['run_id'])}</h1>",
        f"<p>model {escape(summary['model'])} · {summary['seconds']:.1f} s · "
        f"{summary['studies_per_s']:.3f} studies/s · this run's studies below; every study "
        "this model segmented is in report.parquet</p>",
        _table(("this run", "studies"), count_rows),
        f"<h2>Flagged for review ({len(flagged)})</h2>",
        "".join(_flagged(output, r) for r in flagged) or "<p>none</p>",
        f"<h2>Other segmented studies ({len(others)})</h2>",
        _table(
            ("key", "liver mL", "tumours", "tumour mL", "largest mm", "confidence", "thumbnail"),
            [
                (
                    escape(r["key"]),
                    _number(r["liver_ml"]),
                    str(r["tumour_count"]),
                    _number(r["tumour_ml"]),
                    _number(r["largest_tumour_diameter_mm"]),
                    _number(r["confidence"], 3),
                    f'<a href="{escape(_link(output, r.get("thumbnail")), quote=True)}">view</a>'
                    if r.get("thumbnail")
                    else "",
                )
                for r in others
            ],  # fmt: skip
        ),
        f"<h2>Not segmented ({len(failures)})</h2>",
        _table(
            ("input", "stage", "reason"),
            [(escape(f["input"]), escape(f["stage"]), escape(f["reason"])) for f in failures],
        ),
        "</body></html>",
    ]
    return "\n".join(parts)


def write_night_html(
    output: str, summary: dict[str, Any], done: list[dict[str, Any]], failures: list[dict]
) -> str:
    """Write ``OUTPUT/summary.html`` atomically; returns its URI."""
    uri = storage.join(output, PAGE)
    storage.write_bytes(uri, night_html(output, summary, done, failures).encode())
    return uri
