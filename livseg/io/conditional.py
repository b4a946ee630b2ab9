"""Conditional writes: create-if-absent and compare-and-swap of one file, local or on S3.

What lets two registry writers (two sweeps finishing at once) race without losing an update.
S3 evaluates conditional PutObject (``If-Match`` / ``If-None-Match``) atomically; locally we
use ``os.link`` and ``fcntl.flock``. The boto3 client shares ``storage.s3_endpoint``.
"""

from __future__ import annotations

import hashlib
import os
import threading
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

from livseg.errors import UsageError
from livseg.io import storage


def read_with_token(uri: str) -> tuple[bytes | None, str | None]:
    """``(content, token)`` of a file for :func:`write_bytes_if`; ``(None, None)`` if it is absent.

    The token is opaque: the object's ETag on S3, a SHA-256 of the content locally.
    """
    if storage.is_s3(uri):
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
        data = Path(storage.filesystem(uri)[1]).read_bytes()
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
    if storage.is_s3(uri):
        return _s3_put_if(uri, data, expected)
    target = Path(storage.filesystem(uri)[1])
    if expected is None:
        tmp = storage.write_temp(target, data)
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
        storage.replace_local(target, data)
    return True


def _bucket_key(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if not parsed.netloc:
        raise UsageError(f"{uri}: S3 URI without a bucket; write s3://BUCKET/KEY")
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
    """A boto3 S3 client for the same endpoint and region as ``storage.filesystem`` uses."""
    # boto3's default session is not safe to create clients from in several threads at once.
    with _CLIENT_LOCK:
        return _s3_client(*storage.s3_endpoint())


@lru_cache(maxsize=4)
def _s3_client(endpoint: str | None, region: str | None):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name=region)
