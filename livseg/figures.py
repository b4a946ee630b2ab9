"""Matplotlib without a display (cluster nodes have none) and figures as PNG bytes, so any
stage can write a plot to local or ``s3://`` storage."""

from __future__ import annotations

import io


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display on cluster nodes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_png(fig) -> bytes:
    """A finished figure as PNG bytes (100 dpi); the figure is closed."""
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    pyplot().close(fig)
    return buf.getvalue()
