"""Write a synthetic LiTS-like CT dataset.

Usage: python jobs/synth.py --out DIR --cases N [--seed S] [--size 128] [--layout flat|kaggle]
       [--dicom] [--start 0]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from livseg import cli


def parser() -> argparse.ArgumentParser:
    from livseg.synthetic import LAYOUTS

    p = argparse.ArgumentParser(description="Write synthetic LiTS-like CT volumes and masks.")
    p.add_argument("--out", required=True, type=Path, help="output folder (created)")
    p.add_argument("--cases", required=True, type=int, help="number of cases to write")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    p.add_argument("--size", type=int, default=128, help="in-plane voxels (default 128)")
    p.add_argument("--start", type=int, default=0, help="first case id (default 0)")
    p.add_argument("--layout", choices=LAYOUTS, default="flat", help="file layout (default flat)")
    p.add_argument("--dicom", action="store_true", help="also write DICOM series")
    return p


def main(args: argparse.Namespace) -> int:
    """Write the dataset and print where it went."""
    from livseg.synthetic import write_dataset

    volumes = write_dataset(
        args.out, args.cases, seed=args.seed, size=args.size, layout=args.layout,
        dicom=args.dicom, start=args.start,
    )  # fmt: skip
    out = args.out.resolve()
    print(f"{len(volumes)} cases ({args.layout} layout, size {args.size}) under {out}")
    if volumes:
        print(f"  volumes: {volumes[0]} .. {volumes[-1]}")
        masks = out if args.layout == "flat" else out / "segmentations"
        print(f"  segmentations: {masks}")
    if args.dicom:
        print(f"  DICOM series: {out / 'dicom'}/volume-N/")
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(cli.run(main, parser()))
