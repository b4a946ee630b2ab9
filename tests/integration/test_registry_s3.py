"""The model registry on a real S3 protocol server (moto): conditional writes, concurrency, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from livseg import registry
from livseg.io import conditional, storage

ROOT = Path(__file__).resolve().parents[2]


def fake_checkpoint(folder: Path, value: float) -> str:
    """A checkpoint folder the registry accepts (it copies files, it does not load them)."""
    folder.mkdir(parents=True)
    validation = {"data": "3f2a91c0d4", "split": "val", "case_ids": [3, 7], "grid": [64, 64]}
    meta = {"arch": "unet", "in_channels": 1, "classes": 3, "metrics": {"val_score": value}}
    meta["validation"] = validation
    (folder / "meta.json").write_text(json.dumps(meta))
    (folder / "model.pt").write_bytes(f"weights {value}".encode())
    return str(folder)


def test_conditional_writes_on_s3(s3_server):
    uri = s3_server("registry-cas") + "/p/pointer.json"
    assert conditional.read_with_token(uri) == (None, None)
    assert not conditional.write_bytes_if(uri, b"x", '"0123"')  # IfMatch on a missing object
    assert conditional.write_bytes_if(uri, b"one", None)
    assert not conditional.write_bytes_if(uri, b"two", None)  # IfNoneMatch="*"
    data, token = conditional.read_with_token(uri)
    assert data == b"one"
    assert conditional.write_bytes_if(uri, b"two", token)
    assert not conditional.write_bytes_if(uri, b"three", token)  # stale ETag
    assert storage.read_bytes(uri) == b"two"


def test_concurrent_registers_on_s3_then_list_and_rollback(s3_server, tmp_path):
    root = s3_server("registry-conc") + "/models"
    first = registry.register(root, "m", fake_checkpoint(tmp_path / "first", 0.5))
    values = (0.6, 0.9, 0.7, 0.8)
    ckpts = [fake_checkpoint(tmp_path / f"c{i}", v) for i, v in enumerate(values)]
    barrier, results = threading.Barrier(len(ckpts)), []

    def register(ckpt: str) -> None:
        barrier.wait()
        results.append(registry.register(root, "m", ckpt, parent={"run": "r"}))

    threads = [threading.Thread(target=register, args=(c,)) for c in ckpts]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(results) == len(ckpts)
    versions = sorted(r["version"] for r in [first, *results])
    assert versions == ["v0001", "v0002", "v0003", "v0004", "v0005"]
    listed = registry.list_versions(root, "m")
    assert [c["version"] for c in listed] == versions
    pointer = json.loads(storage.read_text(root + "/m/current.json"))
    assert pointer["value"] == 0.9 and [c for c in listed if c["current"]][0]["value"] == 0.9
    promoted = {r["version"] for r in [first, *results] if r["promoted"]}
    assert promoted == {p["version"] for p in pointer["previous"]} | {pointer["version"]}

    back = registry.rollback(root, "m")
    assert back["version"] == pointer["previous"][-1]["version"] and back["value"] < 0.9
    assert registry.resolve_model(root, "m") == back["uri"] == f"{root}/m/{back['version']}"
    assert storage.exists(back["uri"] + "/model.pt")
    with pytest.raises(ValueError, match="no version v0042"):
        registry.rollback(root, "m", "v0042")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "jobs/registry.py", *args], cwd=ROOT, env=dict(os.environ),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_registry_cli(s3_server, tmp_path):
    where = ["--root", s3_server("registry-cli") + "/models", "--name", "liver"]
    done = _cli("register", *where, "--checkpoint", fake_checkpoint(tmp_path / "a", 0.4))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["current"] == "v0001"
    registry.register(where[1], "liver", fake_checkpoint(tmp_path / "b", 0.6))
    listed = _cli("list", *where)
    assert listed.returncode == 0, listed.stderr
    assert "  v0001" in listed.stdout and "* v0002" in listed.stdout
    shown = _cli("show", *where, "--version", "1")
    assert shown.returncode == 0 and json.loads(shown.stdout)["value"] == 0.4
    bad = _cli("rollback", *where, "--version", "v0007")
    assert bad.returncode == 2 and "no version v0007" in bad.stderr
    back = _cli("rollback", *where)
    assert back.returncode == 0 and json.loads(back.stdout)["version"] == "v0001"
