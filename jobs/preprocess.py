"""Preprocess LiTS-layout volumes (local folder or s3://) into Parquet shards with Ray Data.

python jobs/preprocess.py --input DATA --output SHARDS [--size 256] [--context 2] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys

from livseg import cli


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--input", required=True, help="LiTS-layout folder or s3:// prefix")
    p.add_argument("--output", required=True, help="shard folder or s3:// prefix")
    cli.preprocess_flags(p)
    return p


def main(args: argparse.Namespace) -> int:
    from livseg.data import format_summary, preprocess

    record = preprocess(args.input, args.output, cli.preprocess_config(args))
    print(format_summary(record, args.output))
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(cli.run(main, parser()))
