"""What every ``jobs/*.py`` entry point shares: exit codes, error reporting, config flags.

Exit codes (the CLI contract): 0 success (quarantined inputs included), 2 bad arguments or
unusable configuration (a :class:`~livseg.errors.UsageError`), 1 the job itself failed (any
other exception, printed with its traceback).
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from livseg.errors import UsageError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def run(
    main: Callable[[argparse.Namespace], int | None],
    parser: argparse.ArgumentParser,
    argv: list[str] | None = None,
) -> int:
    """Parse ``argv`` and call ``main``; ``UsageError`` → exit 2, other failures → exit 1."""
    args = parser.parse_args(argv)  # exits 2 itself on bad flags
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return main(args) or EXIT_OK
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return EXIT_FAILED
    except Exception:  # noqa: BLE001 - the job failed; show why and exit 1
        traceback.print_exc()
        return EXIT_FAILED


SET_EXAMPLES = {  # one real key of each config class, for --help
    "PreprocessConfig": "shard_mb=64",
    "TrainConfig": "lr=1e-3",
    "ServeSettings": "max_replicas=2",
}


def set_flag(parser: argparse.ArgumentParser, config: str) -> None:
    """``--config FILE`` and repeatable ``--set KEY=VALUE`` for the config class ``config``."""
    parser.add_argument("--config", help=f"YAML/JSON file with {config} keys")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override one {config} key, e.g. --set {SET_EXAMPLES[config]} (repeatable)",
    )


def overrides(args: argparse.Namespace, named: Mapping[str, Any]) -> list[str]:
    """``key=value`` overrides: ``--set`` pairs, then the named flags that were given
    (``None`` = not given), which win."""
    return list(args.set) + [f"{k}={v}" for k, v in named.items() if v is not None]


def preprocess_flags(
    parser: argparse.ArgumentParser,
    size: int = 256,
    roi: bool = True,
    seeds: str = "split and slice sampling",
) -> None:
    """Flags shared by jobs that preprocess (preprocess.py, pipeline.py); ``size`` is the job's
    default, shown in ``--help`` and used by :func:`preprocess_config`; ``roi`` offers
    ``--roi`` (the pipeline makes its ROI shards itself); ``seeds``: what ``--seed`` seeds."""
    parser.set_defaults(default_size=size, roi=None)
    parser.add_argument("--size", type=int, help=f"in-plane output size in pixels (default {size})")
    parser.add_argument(
        "--context", type=int, help="neighbouring slices each side: C = 2K+1 channels (default 2)"
    )
    parser.add_argument("--seed", type=int, help=f"seed for {seeds} (default 0)")
    if roi:
        parser.add_argument(
            "--roi", action="store_true", default=None,
            help="crop each case to its liver's box: shards for a cascade's tumour stage",
        )  # fmt: skip
    set_flag(parser, "PreprocessConfig")


def preprocess_config(args: argparse.Namespace, **defaults):
    """The PreprocessConfig from the job's ``defaults``, a file, ``--set`` overrides and the
    named flags."""
    from livseg.config import load
    from livseg.data import PreprocessConfig

    named = {k: getattr(args, k, None) for k in ("size", "context", "seed", "roi")}
    defaults = {"size": args.default_size, **defaults}
    return load(PreprocessConfig, args.config, overrides(args, named), defaults)


def train_config(args: argparse.Namespace, named: Mapping[str, Any], **defaults):
    """The TrainConfig from the job's ``defaults``, a file, ``--set`` overrides and the named
    flags (flags win)."""
    from livseg.config import load
    from livseg.train import TrainConfig

    return load(TrainConfig, args.config, overrides(args, named), defaults)
