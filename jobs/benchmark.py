"""Side-by-side throughput ratios, printed as JSON and written to benchmark-<stage>.json.

python jobs/benchmark.py [--stage preprocess|train|metrics|inference] [--quick] [--gpu]

metrics: seconds of one LiTS-sized per-case scoring (512²×500, one CPU) against a 10 s target.
inference: slices/s of the model alone, the Segmenter called directly (read → segment → write)
and the same studies through the Serve app (ratio serve / direct, target 0.8).
"""

from __future__ import annotations

import argparse
import json
import sys

from livseg import cli

STAGES = ("preprocess", "train", "metrics", "inference")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--stage", choices=STAGES, action="append", help="stage(s); default all")
    p.add_argument("--quick", action="store_true", help="small inputs, for a smoke run")
    p.add_argument("--gpu", action="store_true", help="use a GPU where the stage can")
    p.add_argument("--data", help="benchmark on this LiTS folder instead of generated cases")
    p.add_argument("--out", default=".", help="folder for benchmark-<stage>.json")
    return p


def main(args: argparse.Namespace) -> int:
    from livseg.benchmark import bench_metrics, bench_preprocess, bench_train, write_result

    for stage in args.stage or STAGES:
        if stage == "preprocess":
            # Real LiTS volumes are 512² in-plane; smaller ones under-state the per-case work.
            result = bench_preprocess(
                cases=4 if args.quick else 16, size=256 if args.quick else 512, data=args.data
            )
        elif stage == "train":
            result = bench_train(
                cases=4 if args.quick else (48 if args.gpu else 8),
                size=128 if args.quick or not args.gpu else 256,
                steps=10 if args.quick else (200 if args.gpu else 30),
                batch_size=128 if args.gpu else 8,
                gpu=args.gpu,
            )
        elif stage == "metrics":
            result = bench_metrics(
                size=256 if args.quick else 512, slices=250 if args.quick else 500
            )
        elif stage == "inference":
            from livseg.benchmark_serving import bench_inference

            result = bench_inference(
                cases=3 if args.quick else 6, size=128 if args.quick else 512,
                repeats=3, gpu=args.gpu,
            )  # fmt: skip
        print(json.dumps(result))
        print(f"written to {write_result(result, args.out)}", file=sys.stderr)
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(cli.run(main, parser()))
