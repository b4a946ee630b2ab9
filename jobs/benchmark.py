"""Benchmarks side by side: one JSON document (printed and written to --out) and a PNG of the
ratios against their targets beside it. Every figure is the median of --repeats timed windows
of equal work after a warm-up, with min and max.

python jobs/benchmark.py [--stage preprocess|train|metrics|inference] [--quick] [--gpu]
                         [--repeats N] [--data DIR|s3://...] [--model CHECKPOINT]
                         [--out FILE]

preprocess: Ray Data vs a single-process loop over the same functions (cases/s, MB/s, ratio;
  target >= 1.6 on 2 cores), one worker's peak memory per case relative to the decoded volume
  (target <= 3), and Ray Data on a 2-node local cluster at 1 and 2 worker processes.
train: the Ray Train worker fed by Ray Data vs the best plain PyTorch input path (prefetching
  thread; pinned memory and non-blocking copies on a GPU), same model, batch, precision and
  steps (target >= 0.85 CPU, >= 0.90 GPU); the model-only ceiling (device-resident tensors) and
  a profile of one window; DDP with 2 workers vs 1 (CPU).
metrics: seconds of one LiTS-sized per-case scoring (512²×500, one CPU; target <= 10 s).
inference: the model alone, the Segmenter called directly, the Serve app and the nightly
  archive job on the same studies (targets: Serve and archive >= 0.8 of direct); the model
  is --model, or a unet-resnet34 trained for two steps (speed does not depend on weights).
"""

from __future__ import annotations

import argparse
import json
import sys

from livseg import cli
from livseg.benchmarks import SCALES, STAGES

DEFAULT_OUT = "livseg-work/benchmark/benchmark.json"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--stage", choices=STAGES, action="append", help="stage(s); default all")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small inputs: <= 10 min on 2 cores")
    size.add_argument("--tiny", action="store_true",
                      help="test inputs: seconds per stage, figures not meaningful")  # fmt: skip
    p.add_argument("--gpu", action="store_true", help="train and infer on a GPU (256², batch 128)")
    p.add_argument(
        "--repeats", type=int, default=3, help="timed windows per figure, >= 3 (default 3)"
    )
    p.add_argument("--data", help="preprocess this LiTS folder or s3:// prefix instead")
    p.add_argument("--model", help="inference: measure this checkpoint (folder or s3://) "
                   "instead of a briefly trained unet-resnet34")  # fmt: skip
    p.add_argument("--out", default=DEFAULT_OUT, help=f"JSON file, local or s3:// (default "
                   f"{DEFAULT_OUT}); the plot goes beside it as .png")  # fmt: skip
    return p


def main(args: argparse.Namespace) -> int:
    from livseg.benchmarks import check_finite, document, run_benchmarks, write_document

    scale = SCALES["tiny" if args.tiny else "quick" if args.quick else "full"]
    stages = tuple(args.stage or STAGES)
    figures = run_benchmarks(stages, scale, args.repeats, args.gpu, args.data, args.model)
    model = args.model or ("trained briefly" if "inference" in stages else "none")
    settings = {"stages": list(stages), "scale": "tiny" if args.tiny else
                "quick" if args.quick else "full", "gpu": args.gpu, "repeats": args.repeats,
                "data": args.data or "generated",
                "model": model}  # fmt: skip
    doc = document(figures, settings)
    check_finite(doc)
    print(json.dumps(doc, indent=2))
    json_path, png_path = write_document(doc, args.out)
    print(f"written: {json_path} and {png_path}", file=sys.stderr)
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(cli.run(main, parser()))
