"""What every ``jobs/*.py`` entry point shares: exit codes and error reporting.

Exit codes (the CLI contract): 0 success (quarantined inputs included), 2 bad arguments or
unusable configuration, 1 the job itself failed.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Callable

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def run(
    main: Callable[[argparse.Namespace], int | None],
    parser: argparse.ArgumentParser,
    argv: list[str] | None = None,
) -> int:
    """Parse ``argv`` and call ``main``; map ``ValueError`` to exit 2 and crashes to exit 1."""
    args = parser.parse_args(argv)  # exits 2 itself on bad flags
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return main(args) or EXIT_OK
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return EXIT_FAILED
    except Exception:  # noqa: BLE001 - the job failed; show why and exit 1
        traceback.print_exc()
        return EXIT_FAILED


def preprocess_flags(parser: argparse.ArgumentParser) -> None:
    """Flags shared by jobs that preprocess (preprocess.py, pipeline.py)."""
    parser.add_argument("--size", type=int, help="in-plane output size in pixels (default 256)")
    parser.add_argument("--context", type=int, help="neighbouring slices each side (C = 2K+1)")
    parser.add_argument("--seed", type=int, help="seed for split and slice sampling")
    parser.add_argument("--config", help="YAML/JSON file with PreprocessConfig keys")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one PreprocessConfig key, e.g. --set window=-100,300 (repeatable)",
    )


def preprocess_config(args: argparse.Namespace, **defaults):
    """Build the PreprocessConfig from a file, ``--set`` overrides and the named flags."""
    from livseg.config import PreprocessConfig, load

    overrides = [f"{k}={v}" for k, v in defaults.items()] + list(args.set)
    overrides += [
        f"{k}={getattr(args, k)}"
        for k in ("size", "context", "seed")
        if getattr(args, k) is not None
    ]
    return load(PreprocessConfig, args.config, overrides)
