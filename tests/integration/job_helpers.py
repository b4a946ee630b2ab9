"""Shared by integration tests: run a job in-process, check a written report, free ports."""

from __future__ import annotations

import importlib.util
import socket
from pathlib import Path

from PIL import Image

from livseg import cli

ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_job(name: str, argv: list[str]) -> int:
    """Run ``jobs/<name>.py`` in this process (the session's Ray instance is reused)."""
    spec = importlib.util.spec_from_file_location(f"job_{name}", ROOT / "jobs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return cli.run(module.main, module.parser(), argv)


def check_report(out: Path) -> list[str]:
    """Every image the HTML names exists, is a valid PNG of non-trivial size; returns names."""
    html = (out / "report.html").read_text()
    names = sorted({part.split('"')[0] for part in html.split('<img src="')[1:]})
    assert names, "report has no figures"
    for name in names:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5_000, name
        with Image.open(out / name) as image:
            image.verify()
    return names


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
