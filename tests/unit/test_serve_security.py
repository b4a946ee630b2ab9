"""Token handling, URI confinement and settings of the Serve app (no Ray needed)."""

from __future__ import annotations

import os

import pytest

from livseg.errors import UsageError
from livseg.serve.security import Forbidden, authorised, confine, load_token, token_digest
from livseg.serve.settings import ServeSettings

TOKEN = "s3cret-token-0123456789"


def test_bearer_token_is_checked_against_its_digest():
    digest = token_digest(TOKEN)
    assert authorised(f"Bearer {TOKEN}", digest)
    assert not authorised(None, digest)
    assert not authorised("Bearer wrong-token-0123456789", digest)
    assert not authorised(TOKEN, digest)  # no scheme
    assert not authorised(f"Basic {TOKEN}", digest)
    assert authorised(None, None)  # no token configured (loopback only, see build_app)


def test_token_from_env_or_file(tmp_path, monkeypatch):
    monkeypatch.setenv("LIVSEG_TEST_TOKEN", TOKEN)
    assert load_token("LIVSEG_TEST_TOKEN", "") == TOKEN
    monkeypatch.delenv("LIVSEG_TEST_TOKEN")
    secret = tmp_path / "token"
    secret.write_text(TOKEN + "\n")
    assert load_token("LIVSEG_TEST_TOKEN", str(secret)) == TOKEN
    assert load_token("LIVSEG_TEST_TOKEN", "") is None
    secret.write_text("short")
    with pytest.raises(UsageError, match="fewer than 16"):
        load_token("LIVSEG_TEST_TOKEN", str(secret))
    with pytest.raises(UsageError, match="cannot read"):
        load_token("LIVSEG_TEST_TOKEN", str(tmp_path / "missing"))


def test_uris_are_confined_to_the_roots(tmp_path):
    root = tmp_path / "archive"
    (root / "a").mkdir(parents=True)
    roots = (str(root), "s3://hospital/ct")
    assert confine(str(root / "a" / "x.nii.gz"), roots) == os.path.realpath(root / "a/x.nii.gz")
    assert confine("s3://hospital/ct/2026/x.nii.gz", roots) == "s3://hospital/ct/2026/x.nii.gz"
    for bad in (
        str(root / ".." / "secrets.nii"),
        str(tmp_path / "other" / "x.nii"),
        str(root) + "-sibling/x.nii",  # a prefix of the name is not inside the folder
        "s3://hospital/ct/../billing/x.nii",
        "s3://hospital/ctx/x.nii",
        "s3://other-bucket/ct/x.nii",
        "http://example.org/x.nii",
        "file:///etc/passwd",
        "s3://hospital//ct/x.nii",  # S3 key "/ct/x.nii": outside the prefix
        "s3://hospital/ct/./x.nii",
        "relative/x.nii",  # relative to what? each replica's working directory
        "",
    ):
        with pytest.raises(Forbidden):
            confine(bad, roots)


def test_a_symlink_out_of_the_root_is_refused(tmp_path):
    root = tmp_path / "archive"
    root.mkdir()
    (tmp_path / "private").mkdir()
    (root / "link").symlink_to(tmp_path / "private")
    with pytest.raises(Forbidden, match="outside the allowed roots"):
        confine(str(root / "link" / "x.nii"), (str(root),))


def test_no_roots_means_no_uris(tmp_path):
    with pytest.raises(Forbidden, match="accepts no URIs"):
        confine(str(tmp_path / "x.nii"), ())


def test_settings_know_loopback_and_reject_bad_values():
    assert ServeSettings(host="127.0.0.1").loopback and ServeSettings(host="::1").loopback
    assert ServeSettings(host="localhost").loopback
    assert not ServeSettings(host="0.0.0.0").loopback
    assert not ServeSettings(host="10.1.2.3").loopback
    with pytest.raises(UsageError, match="port"):
        ServeSettings(port=0)
    with pytest.raises(UsageError, match="min ≤ max"):
        ServeSettings(min_replicas=3, max_replicas=2)
    assert ServeSettings(roots="s3://a/b").roots == ("s3://a/b",)
    limits = ServeSettings(min_certainty=0.8, liver_ml_min=200, liver_ml_max=3000).review_limits()
    assert (limits.min_certainty, limits.liver_ml) == (0.8, (200, 3000))
    assert ServeSettings().review_limits(None).min_certainty == 0.94  # no model limit
    with pytest.raises(UsageError, match="min_certainty"):
        ServeSettings(min_certainty=1.2)
    with pytest.raises(UsageError, match="liver_ml"):
        ServeSettings(liver_ml_min=5000)
    with pytest.raises(UsageError, match="min_agreement"):
        ServeSettings(min_agreement=1.5)


def test_an_open_address_without_a_token_is_refused(monkeypatch):
    from livseg.serve.app import build_app

    monkeypatch.delenv("LIVSEG_SERVE_TOKEN", raising=False)
    with pytest.raises(UsageError, match="no token is set"):
        build_app(ServeSettings(host="0.0.0.0"), loopback_checked=True)
    with pytest.raises(UsageError, match="no token is set"):  # serve run: address unknown
        build_app(ServeSettings(host="127.0.0.1"))
    build_app(ServeSettings(host="127.0.0.1"), loopback_checked=True)
    build_app(ServeSettings(host="0.0.0.0"), "a-long-enough-token-123")


def test_serve_run_arguments_build_the_app(monkeypatch):
    """``serve run livseg.serve.app:app_builder key=value`` passes strings; typos are refused."""
    from ray.serve import Application

    from livseg.serve import app_builder

    monkeypatch.setenv("LIVSEG_SERVE_TOKEN", "a-long-enough-token-123")
    app = app_builder({"model": "m", "port": "8123", "roots": "/a,s3://b/c", "qa": "false"})
    assert isinstance(app, Application)
    with pytest.raises(UsageError, match="unknown ServeSettings key"):
        app_builder({"modle": "m"})
    monkeypatch.delenv("LIVSEG_SERVE_TOKEN")
    with pytest.raises(UsageError, match="no token is set"):
        app_builder({"model": "m"})
