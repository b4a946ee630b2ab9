"""Local paths and ``s3://`` URIs behind one small API (pyarrow.fs).

This is the only module that knows about S3 endpoints: the endpoint comes from the standard
``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` variables and credentials from the standard AWS
chain (environment, profile, instance role), never from our own config files.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import threading
import uuid
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.fs as pafs


def is_s3(uri: str) -> bool:
    """True when ``uri`` names an object store location (``s3://bucket/key``)."""
    return str(uri).startswith("s3://")


def _s3_filesystem() -> pafs.S3FileSystem:
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    kwargs: dict = {}
    if endpoint:
        parsed = urlparse(endpoint)
        kwargs["endpoint_override"] = parsed.netloc or parsed.path
        kwargs["scheme"] = parsed.scheme or "https"
        # A custom endpoint (MinIO, moto, on-prem) has no region to discover; asking AWS for one
        # would hang on an air-gapped cluster.
        kwargs["region"] = region or "us-east-1"
    elif region:
        kwargs["region"] = region
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
            raise ValueError(f"{uri}: S3 URI without a bucket; write s3://BUCKET/PREFIX")
        return _s3_filesystem(), (parsed.netloc + parsed.path).rstrip("/")
    if "://" in uri and not uri.startswith("file://"):
        raise ValueError(f"{uri}: unsupported URI scheme; use a local path or s3://BUCKET/PREFIX")
    path = uri[len("file://") :] if uri.startswith("file://") else uri
    return pafs.LocalFileSystem(), str(Path(path).expanduser().resolve())


def join(base: str, *parts: str) -> str:
    """Join URI/path components with ``/`` (keeps the ``s3://`` scheme)."""
    if is_s3(base):
        return posixpath.join(base.rstrip("/"), *[p.strip("/") for p in parts])
    return str(Path(base, *parts))


def basename(uri: str) -> str:
    return posixpath.basename(str(uri).rstrip("/"))


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
    _replace_local(Path(path), data)


def _write_temp(target: Path, data: bytes) -> Path:
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


def _replace_local(target: Path, data: bytes) -> None:
    tmp = _write_temp(target, data)
    try:
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


def read_with_token(uri: str) -> tuple[bytes | None, str | None]:
    """``(content, token)`` of a file for :func:`write_bytes_if`; ``(None, None)`` if it is absent.

    The token is opaque: the object's ETag on S3, a SHA-256 of the content locally.
    """
    if is_s3(uri):
        from botocore.exceptions import ClientError

        bucket, key = _bucket_key(uri)
        try:
            obj = _boto_s3().get_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if _error_code(exc) & {"NoSuchKey", "404"}:
                return None, None
            raise
        return obj["Body"].read(), obj["ETag"]
    try:
        data = Path(filesystem(uri)[1]).read_bytes()
    except FileNotFoundError:
        return None, None
    return data, hashlib.sha256(data).hexdigest()


def write_bytes_if(uri: str, data: bytes, expected: str | None) -> bool:
    """Write ``data`` only if the file still has the token ``expected`` from :func:`read_with_token`
    (``None``: only if the file does not exist yet). False when another writer got there first.

    S3: a conditional PutObject (``IfMatch`` / ``IfNoneMatch="*"``), which S3 evaluates atomically.
    Locally: create-if-absent is ``os.link`` of a complete temporary file (fails if the target
    exists); replace-if-unchanged compares under ``fcntl.flock`` on a ``.NAME.lock`` file beside
    the target and swaps with ``os.replace``, so readers never see a partial file.
    """
    if is_s3(uri):
        return _s3_put_if(uri, data, expected)
    target = Path(filesystem(uri)[1])
    if expected is None:
        tmp = _write_temp(target, data)
        try:
            os.link(tmp, target)
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)
        return True
    if not target.exists():
        return False
    import fcntl  # POSIX only; imported here so the module still loads elsewhere

    with open(target.with_name(f".{target.name}.lock"), "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        try:
            current = target.read_bytes()
        except FileNotFoundError:
            return False
        if hashlib.sha256(current).hexdigest() != expected:
            return False
        _replace_local(target, data)
    return True


def _bucket_key(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if not parsed.netloc:
        raise ValueError(f"{uri}: S3 URI without a bucket; write s3://BUCKET/KEY")
    return parsed.netloc, parsed.path.lstrip("/")


def _s3_put_if(uri: str, data: bytes, expected: str | None) -> bool:
    from botocore.exceptions import ClientError

    bucket, key = _bucket_key(uri)
    condition = {"IfNoneMatch": "*"} if expected is None else {"IfMatch": expected}
    try:
        _boto_s3().put_object(Bucket=bucket, Key=key, Body=data, **condition)
    except ClientError as exc:
        if _error_code(exc) & _LOST_RACE:
            return False
        raise
    return True


# 412: the condition failed; 409: a concurrent conditional write to the key won;
# NoSuchKey/404: IfMatch on an object deleted since it was read.
_LOST_RACE = frozenset(
    {"PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "412", "409", "404"}
)


def _error_code(exc: Exception) -> set[str]:
    """The error code and HTTP status of a botocore ``ClientError`` as strings."""
    response = getattr(exc, "response", {}) or {}
    return {
        str(response.get("Error", {}).get("Code", "")),
        str(response.get("ResponseMetadata", {}).get("HTTPStatusCode", "")),
    }


_CLIENT_LOCK = threading.Lock()


def _boto_s3():
    """A boto3 S3 client for the same endpoint and region as :func:`filesystem` uses."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    # boto3's default session is not safe to create clients from in several threads at once.
    with _CLIENT_LOCK:
        return _s3_client(endpoint, region or ("us-east-1" if endpoint else None))


@lru_cache(maxsize=4)
def _s3_client(endpoint: str | None, region: str | None):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name=region)


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
    writable; ``ValueError`` naming both otherwise."""
    try:
        make_dirs(uri)
    except OSError as exc:
        raise ValueError(f"{flag}: cannot create {uri} ({exc}); choose another location") from exc
    check_writable(uri)


def check_writable(uri: str) -> None:
    """Raise ``ValueError`` naming ``uri`` when we cannot create files there."""
    probe = join(uri, f".livseg-write-probe-{uuid.uuid4().hex}")
    try:
        write_bytes(probe, b"ok")
        fs, path = filesystem(probe)
        fs.delete_file(path)
    except (OSError, PermissionError) as exc:
        raise ValueError(f"{uri}: output location is not writable ({exc}); choose another") from exc
