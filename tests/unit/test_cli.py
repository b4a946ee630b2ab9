"""The jobs' shared plumbing: exit codes, --help defaults that match the code, config priority."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest

from livseg import cli
from livseg.errors import UsageError

ROOT = Path(__file__).resolve().parents[2]


def _job(name: str):
    spec = importlib.util.spec_from_file_location(f"job_{name}", ROOT / "jobs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _main_raising(exc: BaseException):
    def main(args: argparse.Namespace) -> int:
        raise exc

    return main


def test_user_errors_exit_2_and_failures_exit_1_with_a_traceback(capsys):
    parser = argparse.ArgumentParser()
    assert cli.run(_main_raising(UsageError("--data x: no such folder")), parser, []) == 2
    assert "error: --data x: no such folder" in capsys.readouterr().err
    # A ValueError from inside the job (numpy, torch, an empty result) is a failure, not usage.
    assert cli.run(_main_raising(ValueError("max() arg is an empty sequence")), parser, []) == 1
    assert "Traceback" in capsys.readouterr().err
    assert cli.run(_main_raising(RuntimeError("boom")), parser, []) == 1


def test_config_errors_are_usage_errors():
    from livseg.config import from_dict
    from livseg.data import PreprocessConfig

    with pytest.raises(UsageError, match="unknown PreprocessConfig key"):
        from_dict(PreprocessConfig, {"sise": 3})
    with pytest.raises(UsageError, match="multiple of 16"):
        PreprocessConfig(size=100)
    from livseg.train import TrainConfig

    # checked on the driver: on a Ray Train worker it would be retried as a fault, then exit 1
    with pytest.raises(UsageError, match="dice or focal above 0"):
        TrainConfig(dice=0, focal=0)


@pytest.mark.parametrize(("job", "size"), [("pipeline", 128), ("preprocess", 256)])
def test_help_shows_the_size_the_job_uses(job, size, tmp_path):
    module = _job(job)
    parser = module.parser()
    assert f"(default {size})" in " ".join(parser.format_help().split())
    required = ["--input", "in", "--output", "out"] if job == "preprocess" else []
    assert cli.preprocess_config(parser.parse_args(required)).size == size
    # priority: the job's default < a --config file < --set < a named flag
    config = tmp_path / "cfg.yaml"
    config.write_text("size: 96\ncontext: 1\n")
    args = parser.parse_args([*required, "--config", str(config)])
    assert cli.preprocess_config(args).size == 96
    args = parser.parse_args([*required, "--config", str(config), "--set", "size=64"])
    assert cli.preprocess_config(args).size == 64
    args = parser.parse_args(
        [*required, "--config", str(config), "--set", "size=64", "--size", "32"]
    )
    assert cli.preprocess_config(args).size == 32 and cli.preprocess_config(args).context == 1
