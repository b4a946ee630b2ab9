"""The model registry: list versions, show one, register a checkpoint, roll back.

    python jobs/registry.py list     [--root ROOT] [--name NAME]
    python jobs/registry.py show     [--root ROOT] [--name NAME] [--version V]
    python jobs/registry.py register [--root ROOT] [--name NAME] --checkpoint URI
        [--metric val_score] [--force]
    python jobs/registry.py rollback [--root ROOT] [--name NAME] [--version V]
    python jobs/registry.py bundle   --liver URI --tumour URI --data SHARDS --out URI

``bundle`` makes a cascade (one checkpoint folder, two stages): the liver stage trained on whole
slices, the tumour stage on liver-ROI shards (jobs/preprocess.py --roi); its validation metrics
are measured through the cascade on the original grids of SHARDS' validation cases, so register
it like any checkpoint (it is compared only with models scored the same way).

ROOT is a folder or s3:// prefix (default livseg-work/models), NAME the model (default livseg).
A new version becomes current only if it beats current on the same metric, unless --force;
rollback without --version goes back to the previous current version.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from livseg import cli


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    commands = p.add_subparsers(dest="command", required=True)
    for command, help_text in (
        ("list", "every version, the current one marked *"),
        ("show", "the card of the current version (or --version)"),
        ("register", "store a checkpoint as the next version; promote it if better"),
        ("rollback", "make the previous (or --version) version current again"),
    ):
        sub = commands.add_parser(command, help=help_text)
        sub.add_argument("--root", default="livseg-work/models", help="registry folder or s3://")
        sub.add_argument("--name", default="livseg", help="model name (default livseg)")
        if command in ("show", "rollback"):
            sub.add_argument("--version", help="version id, e.g. v0003")
        if command == "register":
            sub.add_argument("--checkpoint", required=True, help="checkpoint folder or s3://")
            sub.add_argument(
                "--metric",
                default="val_score",
                help="metric to compare on "
                "(default val_score: mean validation liver and tumour Dice; liver "
                "where no validation case has tumour)",
            )
            sub.add_argument("--force", action="store_true", help="make it current regardless")
    sub = commands.add_parser("bundle", help="make a cascade checkpoint from two stages")
    sub.add_argument("--liver", required=True, help="stage 1 checkpoint (whole slices)")
    sub.add_argument("--tumour", required=True, help="stage 2 checkpoint (trained with --roi)")
    sub.add_argument("--data", required=True, help="stage 1's shards: validation cases")
    sub.add_argument("--out", required=True, help="folder or s3:// prefix for the bundle")
    return p


def main(args: argparse.Namespace) -> int:
    from livseg import registry
    from livseg.io import storage

    logging.getLogger("botocore").setLevel(logging.WARNING)  # not "Found credentials" every run
    if args.command == "list":
        versions = registry.list_versions(args.root, args.name)
        if not versions:
            print(f"no versions of {args.name} under {args.root}")
        for card in versions:
            mark = "*" if card["current"] else " "
            parent = ",".join(f"{k}={v}" for k, v in (card.get("parent") or {}).items())
            arch = card.get("arch") or "?"
            if card.get("cascade"):
                arch = f"{arch}+{card['cascade'].get('tumour_arch')} (cascade)"
            print(f"{mark} {card['version']}  {arch:16s} "
                  f"{card['metric']}={card['value']:.4f}  {card['created']}  {parent}")  # fmt: skip
    elif args.command == "show":
        uri = registry.resolve_model(args.root, args.name, args.version)  # checks the version
        version = storage.basename(uri)
        card = next(
            c for c in registry.list_versions(args.root, args.name) if c["version"] == version
        )
        print(json.dumps({**card, "uri": uri}, indent=2))
    elif args.command == "bundle":
        from livseg.evaluate import bundle_cascade

        metrics = bundle_cascade(args.liver, args.tumour, args.data, args.out)
        print(json.dumps({"bundle": args.out, "metrics": metrics}, indent=2))
    elif args.command == "register":
        result = registry.register(
            args.root, args.name, args.checkpoint, metric=args.metric, force=args.force
        )
        print(json.dumps(result, indent=2))
    else:
        print(json.dumps(registry.rollback(args.root, args.name, args.version), indent=2))
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(cli.run(main, parser()))
