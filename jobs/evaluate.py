"""Score models or folders of masks with the LiTS metrics and write a report.

    python jobs/evaluate.py --pred DIR --ref DIR --out DIR [--mc 100]
    python jobs/evaluate.py --model CKPT [--model CKPT2 …] --data SHARDS|LITS_DIR --out DIR

--pred/--ref matches masks by case number (segmentation-N.nii[.gz]), any orientation.
--model takes checkpoint folders (printed by jobs/train.py) or registry entries
(models/<name>, its current version) and segments the --split (default test) of a shard set,
using the raw cases it was made from, or every case of a raw LiTS folder.
Writes per_case.csv, comparison.csv (one row per model), summary.json (means, medians, global
Dice, detection, Monte-Carlo 95 % intervals) and report.html with its PNG figures into --out.
"""

from __future__ import annotations

import argparse
import sys

from livseg import cli
from livseg.errors import UsageError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--pred", help="folder of predicted masks (with --ref)")
    p.add_argument("--ref", help="folder of reference masks (with --pred)")
    p.add_argument("--model", action="append", help="checkpoint or registry entry (repeatable)")
    p.add_argument("--data", help="shard set or raw LiTS folder to segment (with --model)")
    p.add_argument("--split", default="test", help="split of a shard set (default test)")
    p.add_argument("--out", required=True, help="output folder or s3:// prefix")
    p.add_argument("--mc", type=int, default=100, help="Monte-Carlo iterations (default 100)")
    p.add_argument("--seed", type=int, default=0, help="Monte-Carlo seed (default 0)")
    return p


def main(args: argparse.Namespace) -> int:
    from livseg.evaluate import (
        case_dice_table,
        format_model_comparison,
        score_mask_folders,
        score_models,
        write_evaluation,
    )
    from livseg.io import storage

    masks_mode = bool(args.pred or args.ref)
    if masks_mode == bool(args.model or args.data):
        raise UsageError("give either --pred DIR --ref DIR or --model URI --data URI")
    if masks_mode and not (args.pred and args.ref):
        raise UsageError("--pred and --ref go together: both mask folders are needed")
    if not masks_mode and not (args.model and args.data):
        raise UsageError("--model needs --data (a shard set or a raw LiTS folder) and vice versa")
    if args.mc < 1:
        raise UsageError(f"--mc {args.mc}: use at least 1 Monte-Carlo iteration")
    storage.prepare_output(args.out, f"--out {args.out}")
    if masks_mode:
        results = [score_mask_folders(args.pred, args.ref)]
    else:
        results = score_models(args.model, args.data, args.split)
    summary = write_evaluation(results, args.out, args.mc, args.seed)
    for result in results:
        print(case_dice_table(result))
    print(format_model_comparison(summary))
    failed = sum(len(m["failed"]) for m in summary["models"].values())
    if failed:
        print(f"{failed} case(s) could not be scored; see summary.json 'failed'")
    if not any(m["cases"] for m in summary["models"].values()):
        raise RuntimeError("no case could be scored; see the errors above")
    print(f"report: {storage.join(args.out, 'report.html')}")
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(cli.run(main, parser()))
