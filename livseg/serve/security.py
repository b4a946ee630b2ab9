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
    if not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(token_digest(header[len("Bearer ") :].strip()), digest)


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def confine(uri: str, roots: tuple[str, ...]) -> str:
    """``uri`` if it lies inside one of ``roots`` (local folders or ``s3://bucket/prefix``),
    else ``Forbidden``. Any ``..`` component is refused outright; local paths are resolved
    (symbolic links included) before the comparison."""
    if not isinstance(uri, str) or not uri:
        raise Forbidden("expected a non-empty URI string")
    if not roots:
        raise Forbidden("this server accepts no URIs: start it with roots=… to allow some")
    if ".." in uri.replace("\\", "/").split("/"):
        raise Forbidden(f"{uri!r}: '..' is not allowed in URIs")
    if "://" in uri and not storage.is_s3(uri):
        raise Forbidden(f"{uri!r}: only local paths and s3:// URIs are served")
    for root in roots:
        if storage.is_s3(uri) != storage.is_s3(root):
            continue
        if storage.is_s3(uri):
            inside = _parts(uri[5:])[: len(_parts(root[5:]))] == _parts(root[5:])
        else:
            real, base = os.path.realpath(uri), os.path.realpath(root)
            inside = os.path.commonpath([real, base]) == base
        if inside:
            return uri if storage.is_s3(uri) else os.path.realpath(uri)
    raise Forbidden(f"{uri!r} is outside the allowed roots ({', '.join(roots)})")


def study_key(uri: str) -> str:
    """A short non-identifying name for logs: paths often hold patient names or IDs."""
    return hashlib.sha256(posixpath.normpath(uri).encode()).hexdigest()[:12]
