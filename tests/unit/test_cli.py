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
    with pytest.raises(UsageError, match="seed=-1: must be 0 or more"):
        TrainConfig(seed=-1)


@pytest.mark.parametrize(("job", "size"), [("pipeline", 64), ("preprocess", 256)])
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


JOBS = ("preprocess", "train", "tune", "evaluate", "registry", "serve", "segment_archive",
        "synth", "benchmark", "pipeline")  # fmt: skip


def _config_defaults(job: str) -> dict:
    """Field defaults of the config class whose keys a job's unset flags fall back to."""
    import dataclasses

    from livseg.archive import ArchiveConfig
    from livseg.data import PreprocessConfig
    from livseg.serve import ServeSettings
    from livseg.train import TrainConfig

    config = {
        "preprocess": PreprocessConfig, "pipeline": PreprocessConfig, "train": TrainConfig,
        "tune": TrainConfig, "serve": ServeSettings, "segment_archive": ArchiveConfig,
    }  # fmt: skip
    if job not in config:
        return {}
    fields = {f.name: f.default for f in dataclasses.fields(config[job])}
    return {**fields, "timeout": fields.get("timeout_s")}  # --timeout sets timeout_s


@pytest.mark.parametrize("job", JOBS)
def test_help_states_the_defaults_the_code_uses(job):
    """Every flag with a default says so in --help, and a stated ``(default X)`` is the value
    the job really uses (its argparse default, or the config field an unset flag leaves)."""
    import re

    parser = _job(job).parser()
    fields = _config_defaults(job)
    checked = 0
    for action in parser._actions:
        text = " ".join((action.help or "").split())
        unset = action.default is None or action.default is False or action.default in ("", [])
        if not unset and action.default != argparse.SUPPRESS:  # 0 is a default to state
            assert "default" in text, f"{job} {action.option_strings}: {action.default!r} unsaid"
        stated = re.search(r"\(default ([^()\s]+)\)", text)
        if not stated:
            continue
        used = action.default
        if used is None:
            used = parser.get_default("default_size") if action.dest == "size" else None
            used = fields.get(action.dest) if used is None else used
        said = stated.group(1).strip("'")
        try:
            assert float(said) == float(used), f"{job} --{action.dest}: says {said}, uses {used}"
        except (TypeError, ValueError):
            assert said == str(used), f"{job} --{action.dest}: says {said}, uses {used}"
        checked += 1
    if job != "registry":  # subcommands: its flags live in the subparsers
        assert checked, f"{job}: no stated default was checked"
