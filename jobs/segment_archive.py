"""Segment a hospital archive through the Serve app: the nightly job.

    python jobs/segment_archive.py --archive URI --output URI [--model ROOT/NAME]
        [--rules FILE] [--retry-failed] [--dry-run] [--max-in-flight 4] [--timeout 3600]
        [--gpu] [--address ADDR]

Finds NIfTI files and DICOM series (grouped by SeriesInstanceUID wherever their files lie),
selects series with the rules (default: axial CT, no localizers, ≥ 20 slices, ≤ 6 mm apart,
no gantry tilt; --rules takes a YAML of SelectionRules keys), and segments every study not
already done by the current model. Writes OUTPUT/masks/<key>.nii.gz on each study's own grid,
OUTPUT/report.parquet (one row per study), OUTPUT/failures.parquet (every input not
segmented, and why), OUTPUT/summary.html (the night for a radiologist: flagged studies first,
each with a thumbnail of its key slice and contours under OUTPUT/thumbnails/) and
OUTPUT/runs/<run-id>.json. Safe to rerun and safe to kill: a rerun skips
what is done, redoes failures only with --retry-failed, and redoes everything when the model's
version changes. Uses the Serve app "livseg" running on the cluster, or starts its own app
(handles only, no HTTP) with --model for the run and removes it at the end. --output must lie
outside --archive.
"""

from __future__ import annotations

import argparse
import json
import sys

from livseg import cli


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--archive", required=True, help="folder or s3:// prefix to walk")
    p.add_argument("--output", required=True, help="folder or s3:// prefix for the results")
    p.add_argument("--model", help="registry entry ROOT/NAME (default livseg-work/models/livseg)")
    p.add_argument("--rules", help="YAML of series selection rules (SelectionRules keys)")
    p.add_argument("--retry-failed", action="store_true", help="segment failed studies again")
    p.add_argument("--dry-run", action="store_true", help="list what would be segmented")
    p.add_argument("--max-in-flight", type=int, help="studies in flight at once (default 4)")
    p.add_argument("--timeout", type=float, help="seconds one study may take (default 3600)")
    p.add_argument("--gpu", action="store_true",
                   help="one GPU per replica of the app this job starts")  # fmt: skip
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS or local)")
    return p


def main(args: argparse.Namespace) -> int:
    from livseg.archive import ArchiveConfig, format_summary, segment_archive
    from livseg.config import from_dict
    from livseg.runtime import init_ray

    named = {"archive": args.archive, "output": args.output, "model": args.model,
             "rules": args.rules, "retry_failed": args.retry_failed, "dry_run": args.dry_run,
             "max_in_flight": args.max_in_flight, "timeout_s": args.timeout,
             "gpu": args.gpu or None}  # fmt: skip
    cfg = from_dict(ArchiveConfig, {k: v for k, v in named.items() if v is not None})
    if not cfg.dry_run:
        init_ray(args.address)
    summary = segment_archive(cfg)
    if cfg.dry_run:
        for source in summary["to_segment"]:
            print(f"would segment {source}")
        for row in summary["skipped"]:
            print(f"skip {row['input']}: {row['reason']}")
        return cli.EXIT_OK
    print(format_summary(summary))
    print(
        f"report: {summary['report']}\nsummary: {summary['summary']}\nfor review: {summary['html']}"
    )
    print(json.dumps(summary["counts"]))
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(cli.run(main, parser()))
