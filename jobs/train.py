"""Train the study's architectures with Ray Train (DDP) on preprocessed shards.

    python jobs/train.py --data SHARDS --arch unet-resnet34 [--arch vnet | --arch all]
        [--workers 2] [--gpu] [--epochs 20] [--loss-weights dice=0.8,focal=0.2]
        [--encoder-weights none|imagenet|PATH] [--storage URI] [--name NAME]
        [--lesion-rule] [--register [--registry ROOT] [--model-name livseg]]

Writes checkpoints, history.csv and curves.png under STORAGE/NAME/ARCH/ and, for several
architectures, STORAGE/NAME/comparison.csv. Rerunning the same --name resumes. --register
adds each architecture's best checkpoint to the model registry (jobs/registry.py), which
promotes it only if it beats the current model. --lesion-rule chooses each multi-class 2-D
model's lesion post-processing (minimum tumour volume, hole filling) on the validation cases'
original grids and records it in the best checkpoint (before --register), so the Segmenter,
the evaluation and the Serve app apply it. --register also calibrates each model's review
limit (the confidence below which a served study is flagged) on the validation cases.
"""

from __future__ import annotations

import argparse
import sys

from livseg import cli


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", required=True, help="shard folder or s3:// prefix (preprocess.py)")
    p.add_argument("--arch", action="append", help="unet | unet-resnet34 | unet-<encoder> | "
                   "vnet | all (repeatable; default unet-resnet34)")  # fmt: skip
    p.add_argument("--workers", type=int, help="DDP workers (default 2)")
    p.add_argument("--gpu", action="store_true", help="one GPU per worker, NCCL, bf16")
    p.add_argument("--epochs", type=int, help="maximum epochs (default 20)")
    p.add_argument("--loss-weights", help="e.g. dice=0.8,focal=0.2[,gamma=2]")
    p.add_argument("--encoder-weights", help="none | imagenet | PATH or s3:// state dict")
    p.add_argument("--storage", help="where runs go (default livseg-work/runs)")
    p.add_argument("--name", help="run name; the same name resumes (default 'default')")
    cli.set_flag(p, "TrainConfig")
    p.add_argument("--lesion-rule", action="store_true",
                   help="choose lesion post-processing on the validation split")  # fmt: skip
    p.add_argument("--register", action="store_true", help="register the best checkpoints")
    p.add_argument(
        "--registry",
        default="livseg-work/models",
        help="registry folder or s3:// (default livseg-work/models)",
    )
    p.add_argument("--model-name", default="livseg", help="registry model name (default livseg)")
    return p


def train_config(args: argparse.Namespace, **defaults):
    """TrainConfig from file, --set overrides and the named flags (flags win)."""
    from livseg.train import parse_loss_weights

    named = {
        "data": args.data, "workers": args.workers, "epochs": args.epochs,
        "encoder_weights": args.encoder_weights, "storage": args.storage, "name": args.name,
        "gpu": args.gpu or None, **parse_loss_weights(args.loss_weights or ""),
    }  # fmt: skip
    return cli.train_config(args, named, **defaults)


def archs(args: argparse.Namespace) -> list[str]:
    from livseg.train import STUDY_ARCHS

    chosen = args.arch or ["unet-resnet34"]
    return list(STUDY_ARCHS) if "all" in chosen else chosen


def main(args: argparse.Namespace) -> int:
    from livseg.train import fit_all, format_comparison

    cfg = train_config(args)
    rows = fit_all(cfg, archs(args))
    print(format_comparison(rows))
    for row in rows:
        print(f"{row['arch']}: best checkpoint {row['checkpoint']}")
    print(f"runs: {cfg.storage}/{cfg.name}/ (history.csv, curves.png, comparison.csv)")
    if args.lesion_rule:
        from livseg.evaluate import choose_lesion_rules

        for line in choose_lesion_rules([(r["arch"], r["checkpoint"]) for r in rows], cfg.data):
            print(line, flush=True)
    if args.register:
        from livseg.evaluate import calibrate_before_registering
        from livseg.registry import register

        for row in rows:
            print(f"{row['arch']}: {calibrate_before_registering(row['checkpoint'], cfg.data)}")
            parent = {"run": cfg.name, "arch": row["arch"]}
            done = register(args.registry, args.model_name, row["checkpoint"], parent=parent)
            print(f"{row['arch']}: registered {done['version']}; current {done['current']} "
                  f"({done['reason']})")  # fmt: skip
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(cli.run(main, parser()))
