"""The main job: every stage on embedded defaults (local Ray, ./livseg-work, CPU, generated data).

    python jobs/pipeline.py [--work DIR] [--cases N]

Stages so far: generate LiTS-like cases → preprocess them into Parquet shards with Ray Data →
train the study's architectures briefly with Ray Train and print their comparison → evaluate
them on the test split with the LiTS metrics (report.html, per-case Dice printed).
Rerunning resumes: generated cases, finished shards and training checkpoints are kept.
"""

from __future__ import annotations

import argparse
import sys

from livseg import cli


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--work", default="livseg-work", help="work folder or s3:// prefix")
    p.add_argument("--cases", type=int, default=24, help="generated cases (default 24)")
    p.add_argument("--data", help="use this LiTS-layout folder instead of generated cases")
    p.add_argument("--arch", action="append", help="architectures to train (default: the "
                   "study's unet, unet-resnet34, vnet)")  # fmt: skip
    p.add_argument("--epochs", type=int, default=3, help="epochs per architecture (default 3)")
    cli.preprocess_flags(p)
    return p


def main(args: argparse.Namespace) -> int:
    import ray

    from livseg import storage
    from livseg.data import format_summary, preprocess
    from livseg.evaluate import (
        case_dice_table,
        format_model_comparison,
        score_models,
        write_evaluation,
    )
    from livseg.runs import STUDY_ARCHS, fit_all, format_comparison
    from livseg.synthetic_files import write_dataset
    from livseg.train import TrainConfig

    if args.cases < 3:
        raise ValueError(f"--cases {args.cases}: need at least 3 (one per split)")
    # Small defaults keep the whole main job within minutes on a 2-core laptop.
    cfg = cli.preprocess_config(args, size=128)
    raw = args.data or storage.join(args.work, "raw")
    if not args.data:
        if storage.is_s3(raw):
            raise ValueError("generated data is written locally; give --work a local folder")
        print(f"[1/4] generating {args.cases} LiTS-like cases in {raw}", flush=True)
        write_dataset(raw, args.cases, seed=cfg.seed, size=cfg.size)
    shards = storage.join(args.work, "shards")
    print(f"[2/4] preprocessing {raw} → {shards} with Ray Data", flush=True)
    record = preprocess(raw, shards, cfg)
    print(format_summary(record, shards))

    archs = args.arch or list(STUDY_ARCHS)
    print(f"[3/4] training {', '.join(archs)} with Ray Train ({args.epochs} epochs each)")
    # One worker with every CPU is the fastest CPU setup; the recipe is the quality test's.
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    train_cfg = TrainConfig(
        data=shards, epochs=args.epochs, lr=1e-3, workers=1, cpus_per_worker=cpus,
        storage=storage.join(args.work, "runs"), name="pipeline", patience=args.epochs,
    )  # fmt: skip
    rows = fit_all(train_cfg, archs)
    print(format_comparison(rows))
    print(f"comparison: {storage.join(args.work, 'runs', 'pipeline', 'comparison.csv')}")

    report_dir = storage.join(args.work, "evaluation")
    print(f"[4/4] evaluating {', '.join(archs)} on the test split (original voxel grids)")
    results = score_models([row["checkpoint"] for row in rows], shards, "test")
    summary = write_evaluation(results, report_dir, mc=100, seed=cfg.seed)
    for result in results:
        print(case_dice_table(result))
    print(format_model_comparison(summary))
    print(f"report: {storage.join(report_dir, 'report.html')}")
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(cli.run(main, parser()))
