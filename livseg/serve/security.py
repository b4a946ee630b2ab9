"""Application-level security of the Serve app: Serve has no built-in authentication and Ray's
token auth protects the cluster, not the application's HTTP routes.

- a bearer token (from an environment variable or a secret file), of which only a SHA-256 digest
  travels to the replicas, compared in constant time;
- URIs confined to configured roots: no ``..``, no other scheme or bucket.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import posixpath
from pathlib import Path

from livseg.errors import UsageError
from livseg.io import storage


class Forbidden(Exception):
    """A URI outside the configured roots (HTTP 403); the message says which roots are allowed."""


def load_token(env: str, file: str) -> str | None:
    """The bearer token from ``$env`` or the file ``file`` (stripped); None if neither is set."""
    token = os.environ.get(env, "").strip() if env else ""
    if not token and file:
        try:
            token = Path(file).read_text().strip()
        except OSError as exc:
            raise UsageError(f"token_file {file}: cannot read it ({exc.strerror})") from exc
        if not token:
            raise UsageError(f"token_file {file}: the file is empty")
    if token and len(token) < 16:
        raise UsageError("the serve token has fewer than 16 characters; use a long random one")
    return token or None


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def authorised(header: str | None, digest: str | None) -> bool:
    """True when no token is configured, or ``Authorization: Bearer <token>`` matches it
    (constant-time comparison of digests)."""
    if digest is None:
        return True
    scheme, _, credentials = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():  # RFC 7235: case-insensitive
        return False
    return hmac.compare_digest(token_digest(credentials.strip()), digest)


def _parts(uri: str) -> list[str]:
    """Path components; empty or ``.`` ones are refused (``s3://b//x`` is key ``/x`` on S3)."""
    path = uri[5:] if storage.is_s3(uri) else uri
    parts = path.replace("\\", "/").split("/")
    inner = parts[1:-1] if not storage.is_s3(uri) else parts[:-1]  # a leading "/" is local
    if any(p in ("", ".") for p in inner) or ".." in parts:
        raise Forbidden(f"{uri!r}: empty, '.' or '..' path components are not allowed")
    return [p for p in parts if p]


def confine(uri: str, roots: tuple[str, ...]) -> str:
    """``uri`` if it lies inside one of ``roots`` (local folders or ``s3://bucket/prefix``),
    else ``Forbidden``. ``..``, ``.`` and empty components are refused outright; local paths
    and roots are resolved (symbolic links included) before the comparison."""
    if not isinstance(uri, str) or not uri:
        raise Forbidden("expected a non-empty URI string")
    if any(ord(c) < 32 or ord(c) == 127 for c in uri):
        raise Forbidden("URIs with control characters are not allowed")
    if not roots:
        raise Forbidden("this server accepts no URIs: start it with roots=… to allow some")
    if "://" in uri and not storage.is_s3(uri):
        raise Forbidden(f"{uri!r}: only local paths and s3:// URIs are served")
    parts = _parts(uri)
    for root in roots:
        if storage.is_s3(uri) != storage.is_s3(root):
            continue
        if storage.is_s3(uri):
            base = [p for p in root[5:].split("/") if p]
            if parts[: len(base)] == base:
                return uri
        elif os.path.isabs(uri):
            real, base = os.path.realpath(uri), os.path.realpath(os.path.abspath(root))
            if os.path.commonpath([real, base]) == base:
                return real
    raise Forbidden(f"{uri!r} is outside the allowed roots ({', '.join(roots)})")


def study_key(uri: str) -> str:
    """A short non-identifying name for logs: paths often hold patient names or IDs."""
    return hashlib.sha256(posixpath.normpath(uri).encode()).hexdigest()[:12]
