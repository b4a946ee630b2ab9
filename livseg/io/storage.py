"""Local paths and ``s3://`` URIs behind one small API (pyarrow.fs).

This is the only module that knows about S3 endpoints: the endpoint comes from the standard
``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` variables and credentials from the standard AWS
chain (environment, profile, instance role), never from our own config files.
"""

from __future__ import annotations

import os
import posixpath
import re
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.fs as pafs

from livseg.errors import UsageError


def is_s3(uri: str) -> bool:
    """True when ``uri`` names an object store location (``s3://bucket/key``)."""
    return str(uri).startswith("s3://")


def s3_endpoint() -> tuple[str | None, str | None]:
    """``(endpoint URL or None, region or None)`` from the standard AWS variables.

    A custom endpoint (MinIO, moto, on-prem) has no region to discover; asking AWS for one would
    hang on an air-gapped cluster, so it defaults to ``us-east-1`` there.
    """
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    return endpoint or None, region or ("us-east-1" if endpoint else None)


def _s3_filesystem() -> pafs.S3FileSystem:
    endpoint, region = s3_endpoint()
    kwargs: dict = {"region": region} if region else {}
    if endpoint:
        parsed = urlparse(endpoint)
        kwargs["endpoint_override"] = parsed.netloc or parsed.path
        kwargs["scheme"] = parsed.scheme or "https"
    return pafs.S3FileSystem(**kwargs)


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """Return ``(filesystem, path)`` for a local path or an ``s3://`` URI.

    The path is what pyarrow and Ray Data expect with an explicit filesystem: ``bucket/key`` for
    S3, an absolute path for local files.
    """
    uri = str(uri)
    if is_s3(uri):
        parsed = urlparse(uri)
        if not parsed.netloc:
            raise UsageError(f"{uri}: S3 URI without a bucket; write s3://BUCKET/PREFIX")
        return _s3_filesystem(), (parsed.netloc + parsed.path).rstrip("/")
    if "://" in uri and not uri.startswith("file://"):
        raise UsageError(f"{uri}: unsupported URI scheme; use a local path or s3://BUCKET/PREFIX")
    path = uri[len("file://") :] if uri.startswith("file://") else uri
    return pafs.LocalFileSystem(), str(Path(path).expanduser().resolve())


def join(base: str, *parts: str) -> str:
    """Join URI/path components with ``/`` (keeps the ``s3://`` scheme)."""
    if is_s3(base):
        return posixpath.join(base.rstrip("/"), *[p.strip("/") for p in parts])
    return str(Path(base, *parts))


def basename(uri: str) -> str:
    return posixpath.basename(str(uri).rstrip("/"))


def absolute(uri: str) -> str:
    """S3 URIs as given (no trailing ``/``); local paths absolute, so Ray workers, Tune trials
    (each in its own working directory) and Serve replicas elsewhere find them."""
    return str(uri).rstrip("/") if is_s3(uri) else filesystem(uri)[1]


def exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def is_dir(uri: str) -> bool:
    fs, path = filesystem(uri)
    return fs.get_file_info(path).type == pafs.FileType.Directory


def list_files(uri: str, recursive: bool = True) -> list[tuple[str, int]]:
    """Return ``(uri, size_bytes)`` of every file below ``uri``, sorted by URI.

    A missing folder raises ``FileNotFoundError`` naming it.
    """
    fs, path = filesystem(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"{uri}: no such folder or bucket prefix")
    if info.type == pafs.FileType.File:
        return [(str(uri), info.size)]
    selector = pafs.FileSelector(path, recursive=recursive)
    prefix = "s3://" if is_s3(uri) else ""
    out = [
        (prefix + f.path, f.size)
        for f in fs.get_file_info(selector)
        if f.type == pafs.FileType.File
    ]
    return sorted(out)


def read_bytes(uri: str) -> bytes:
    """Read a whole file or object."""
    fs, path = filesystem(uri)
    # compression=None: pyarrow would otherwise gunzip *.gz behind our back.
    with fs.open_input_stream(path, compression=None) as stream:
        return stream.read()


def read_head(uri: str, size: int) -> bytes:
    """The first ``size`` bytes of a file or object (a ranged read on S3)."""
    fs, path = filesystem(uri)
    with fs.open_input_file(path) as handle:
        return handle.read(size)


def write_bytes(uri: str, data: bytes) -> None:
    """Write a file atomically: readers see the old content or the new one, never a partial file.

    Locally the data goes to a hidden temporary file in the same folder, then ``os.replace``;
    an S3 PUT is atomic by itself.
    """
    fs, path = filesystem(uri)
    if is_s3(uri):
        with fs.open_output_stream(path, compression=None) as stream:
            stream.write(data)
        return
    replace_local(Path(path), data)


def write_temp(target: Path, data: bytes) -> Path:
    """A hidden, fsynced temporary file beside ``target`` (same filesystem: renames are atomic)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


TEMP_NAME = re.compile(r"^\..+\.[0-9a-f]{32}\.tmp$")  # write_temp's names


def remove_temps(uri: str, older_than_s: float = 0.0) -> int:
    """Delete the temporary files that writers killed mid-write left under a local folder
    (S3 PUTs leave none) when older than ``older_than_s`` (a live writer's are younger);
    returns how many."""
    if is_s3(uri) or not os.path.isdir(uri):
        return 0
    cutoff = time.time() - older_than_s
    stale = [p for p in Path(uri).rglob(".*.tmp")
             if TEMP_NAME.match(p.name) and p.stat().st_mtime <= cutoff]  # fmt: skip
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def replace_local(target: Path, data: bytes) -> None:
    """Atomically replace the local file ``target`` with ``data`` (temporary file + rename)."""
    tmp = write_temp(target, data)
    try:
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


def make_dirs(uri: str) -> None:
    fs, path = filesystem(uri)
    fs.create_dir(path, recursive=True)


def delete_dir(uri: str) -> None:
    """Remove a folder (or S3 prefix) and everything in it; a missing one is fine."""
    fs, path = filesystem(uri)
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        fs.delete_dir(path)


def prepare_output(uri: str, flag: str) -> None:
    """Create the folder ``uri`` (for the command-line ``flag`` that named it) and check it is
    writable; ``UsageError`` naming both otherwise."""
    try:
        make_dirs(uri)
    except OSError as exc:
        raise UsageError(f"{flag}: cannot create {uri} ({exc}); choose another location") from exc
    check_writable(uri)


def check_writable(uri: str) -> None:
    """Raise ``UsageError`` naming ``uri`` when we cannot create files there."""
    probe = join(uri, f".livseg-write-probe-{uuid.uuid4().hex}")
    try:
        write_bytes(probe, b"ok")
        fs, path = filesystem(probe)
        fs.delete_file(path)
    except (OSError, PermissionError) as exc:
        raise UsageError(f"{uri}: output location is not writable ({exc}); choose another") from exc
