"""Sweep the loss weights (and lr) with Ray Tune + ASHA; register the best trial.

    python jobs/tune.py --data SHARDS [--arch unet-resnet34] [--samples 8] [--epochs 20]
        [--space dice=0:1,gamma=1|2|3,lr=3e-5:3e-4:log] [--space-file SPACE.yaml]
        [--max-concurrent K] [--workers 2] [--gpu] [--cpus-per-worker 0.5] [--seed 0]
        [--storage livseg-work/sweeps] [--name sweep]
        [--registry livseg-work/models] [--model-name livseg] [--no-register]

Space syntax: low:high (uniform), low:high:log (log-uniform), a|b|c (choice), one number
(fixed); focal is always 1 - dice. ASHA stops weak trials on val_score (mean validation liver
and tumour Dice; liver alone where no validation case has tumour). Writes STORAGE/NAME/sweep.csv
and sweep.png; rerunning the same --name continues the sweep.
"""

from __future__ import annotations

import argparse
import sys

from livseg import cli


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", required=True, help="shard folder or s3:// prefix (preprocess.py)")
    p.add_argument(
        "--arch", default="unet-resnet34", help="one architecture (default unet-resnet34)"
    )
    p.add_argument("--samples", type=int, default=8, help="trials to sample (default 8)")
    p.add_argument("--epochs", type=int, help="maximum epochs per trial, ASHA's max_t (default 20)")
    p.add_argument(
        "--space",
        default="",
        help="e.g. dice=0.5:1,lr=1e-4:1e-3:log (default: dice=0:1,gamma=1|2|3,lr=3e-5:3e-4:log)",
    )
    p.add_argument("--space-file", help="YAML/JSON mapping key: spec (quote ranges: '0:1')")
    p.add_argument("--max-concurrent", type=int, default=0,
                   help="trials at once (default: as many as the cluster fits)")  # fmt: skip
    p.add_argument(
        "--grace-period", type=int, default=2, help="epochs before ASHA may stop (default 2)"
    )
    p.add_argument(
        "--reduction-factor", type=float, default=3.0, help="ASHA's halving rate (default 3)"
    )
    p.add_argument("--workers", type=int, help="DDP workers per trial (default 2)")
    p.add_argument("--gpu", action="store_true", help="one GPU per worker, NCCL, bf16")
    p.add_argument("--cpus-per-worker", type=float, help="CPUs per worker (default 0.5)")
    p.add_argument("--seed", type=int, default=0, help="seeds sampling and training (default 0)")
    p.add_argument(
        "--storage",
        default="livseg-work/sweeps",
        help="where sweeps go (default livseg-work/sweeps)",
    )
    p.add_argument(
        "--name", default="sweep", help="sweep name; the same name continues it (default sweep)"
    )
    p.add_argument(
        "--registry",
        default="livseg-work/models",
        help="model registry root (default livseg-work/models)",
    )
    p.add_argument("--model-name", default="livseg", help="registry model name (default livseg)")
    p.add_argument("--no-register", action="store_true", help="do not register the best trial")
    p.add_argument("--num-cpus", type=float, help="CPUs of a local Ray instance (default: all)")
    cli.set_flag(p, "TrainConfig")
    return p


def train_config(args: argparse.Namespace):
    """The trials' base TrainConfig: file, --set overrides, then the named flags."""
    named = {
        "data": args.data, "arch": args.arch, "epochs": args.epochs, "workers": args.workers,
        "cpus_per_worker": args.cpus_per_worker, "seed": args.seed, "gpu": args.gpu or None,
    }  # fmt: skip
    return cli.train_config(args, named)


def main(args: argparse.Namespace) -> int:
    from livseg.runtime import init_ray
    from livseg.tune import (
        SweepConfig,
        format_best,
        format_table,
        parse_space,
        register_best,
        sweep,
    )

    train = train_config(args)
    cfg = SweepConfig(
        name=args.name, storage=args.storage, samples=args.samples,
        max_concurrent=args.max_concurrent, grace_period=args.grace_period,
        reduction_factor=args.reduction_factor, seed=args.seed,
        space=parse_space(args.space, args.space_file),
    )  # fmt: skip
    if args.num_cpus is not None:
        init_ray(num_cpus=args.num_cpus)
    out = sweep(train, cfg)
    early = sum(r["stopped_early"] for r in out["rows"])
    verb = "continued" if out["resumed"] else "ran"
    print(f"{verb} sweep {out['name']}: {len(out['rows'])} trials, {early} stopped early")
    print(format_table(out["rows"]))
    print(format_best(out["best"]))
    print(f"table: {out['csv']}\nplot: {out['png']}")
    if not args.no_register:
        from livseg.evaluate import calibrate_before_registering

        print(f"best trial: {calibrate_before_registering(out['best']['checkpoint'], train.data)}")
        reg = register_best(out["best"], out["name"], args.registry, args.model_name)
        state = "promoted to current" if reg["promoted"] else f"not promoted ({reg['reason']})"
        print(f"registered {args.model_name} version {reg['version']}: {state}; {reg['uri']}")
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(cli.run(main, parser()))
