"""Write a synthetic LiTS-like CT dataset.

Usage: python jobs/synth.py --out DIR --cases N [--seed S] [--size 128] [--layout flat|kaggle]
       [--dicom] [--start 0]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from livseg.synthetic_files import LAYOUTS, write_dataset


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, write the dataset, print where it went; 2 on bad arguments."""
    parser = argparse.ArgumentParser(description="Write synthetic LiTS-like CT volumes and masks.")
    parser.add_argument("--out", required=True, type=Path, help="output folder (created)")
    parser.add_argument("--cases", required=True, type=int, help="number of cases to write")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    parser.add_argument("--size", type=int, default=128, help="in-plane voxels (default 128)")
    parser.add_argument("--start", type=int, default=0, help="first case id (default 0)")
    parser.add_argument("--layout", choices=LAYOUTS, default="flat", help="file layout")
    parser.add_argument("--dicom", action="store_true", help="also write DICOM series")
    args = parser.parse_args(argv)
    try:
        volumes = write_dataset(
            args.out,
            args.cases,
            seed=args.seed,
            size=args.size,
            layout=args.layout,
            dicom=args.dicom,
            start=args.start,
        )
    except ValueError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    out = args.out.resolve()
    print(f"{len(volumes)} cases ({args.layout} layout, size {args.size}) under {out}")
    if volumes:
        print(f"  volumes: {volumes[0]} .. {volumes[-1]}")
        masks = out if args.layout == "flat" else out / "segmentations"
        print(f"  segmentations: {masks}")
    if args.dicom:
        print(f"  DICOM series: {out / 'dicom'}/volume-N/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
