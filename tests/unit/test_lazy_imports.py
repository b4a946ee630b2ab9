"""A Ray Data task that decodes shards unpickles ``livseg.data.shards``: importing it must not
pull in torch through the package (≈ 2.5 s per fresh worker), while every exported name still
resolves."""

from __future__ import annotations

import subprocess
import sys


def test_decoding_shards_imports_no_torch():
    code = "import sys, livseg.data.shards; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_every_exported_name_resolves():
    import livseg.data

    assert len(livseg.data.__all__) == 39
    for name in livseg.data.__all__:
        assert getattr(livseg.data, name) is not None, name
