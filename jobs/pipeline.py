"""The main job: every stage on embedded defaults (local Ray, ./livseg-work, CPU, generated data).

    python jobs/pipeline.py [--work DIR] [--cases 24] [--size 64] [--epochs 2]
        [--steps-per-epoch 80] [--volume-epochs 8] [--volume-steps 16]
        [--samples 2] [--sweep-epochs 2]
        [--data LITS_DIR | s3://PREFIX] [--address ADDR] [--gpu]

Stages: generate LiTS-like cases → preprocess them into Parquet shards with Ray Data → train
the study's architectures briefly with Ray Train → a cascade (the unet-resnet34 places the liver
box, a second one, started from its weights and trained on liver-ROI shards, segments liver and
tumour inside it) → sweep the loss weights with Ray Tune (short trials fine-tuning the trained
unet-resnet34) → evaluate every trained model, the cascade and the sweep's best on the test
split (each 2-D model's lesion rule chosen on validation first; LiTS metrics, report.html) →
register them all; the registry makes the best on validation current → start the Serve app
(bearer token) with the current model and run the nightly archive job on a generated hospital
archive through it; one summary at the end.
Rerunning resumes: generated cases, finished shards, training runs, the sweep and registered
versions are kept. On a cluster (--address), every node must reach --work and --data: give
s3:// prefixes (generated cases are written locally, so bring --data).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from dataclasses import replace

from livseg import cli
from livseg.errors import UsageError

# Small enough for about 15 minutes on a 2-core laptop without AVX-512 (fp32): 64² cases and
# slices (at 96² the job took 19 minutes there, at 64² 13-16); the V-Net on a 32³ grid, where
# it learns in minutes (64³ costs 8× per step).
SIZE, VOLUME_GRID = 64, "32,32,32"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--work", default="livseg-work", help="work folder or s3:// prefix (default livseg-work)"
    )
    p.add_argument("--cases", type=int, default=24, help="generated cases (default 24)")
    p.add_argument("--data", help="use this LiTS-layout folder or s3:// prefix instead of "
                   "generated cases")  # fmt: skip
    p.add_argument("--arch", action="append", help="architectures to train (default: the "
                   "study's unet, unet-resnet34, vnet)")  # fmt: skip
    # Two epochs: each also validates and writes a checkpoint (with the optimizer's state, 3×
    # the weights); at 64² and 2 × 80 steps the unets' test liver Dice was 0.90-0.91 (with 2 × 60
    # the plain unet-resnet34 reached 0.86, the best model 0.90).
    p.add_argument("--epochs", type=int, default=2, help="epochs of 2-D models (default 2)")
    p.add_argument("--steps-per-epoch", type=int, default=80,
                   help="batches of 8 slices per 2-D epoch, 0: all (default 80)")  # fmt: skip
    # 8 epochs of 16 batches (two passes over the 15 training volumes) train the V-Net as far
    # as 16 one-pass epochs (validation liver Dice 0.826 both) in 212 s against 238: half the
    # validations and checkpoint writes.
    p.add_argument("--volume-epochs", type=int, default=8,
                   help="epochs of 3-D models (default 8)")  # fmt: skip
    p.add_argument("--volume-steps", type=int, default=16,
                   help="batches of 2 volumes per 3-D epoch, the training volumes read again "
                   "when fewer; 0: one pass (default 16)")  # fmt: skip
    p.add_argument("--samples", type=int, default=2, help="sweep trials (default 2)")
    p.add_argument("--sweep-epochs", type=int, default=2, help="epochs per trial (default 2)")
    p.add_argument("--serve-port", type=int, default=8000,
                   help="port of the Serve app the nightly run uses (default 8000)")  # fmt: skip
    p.add_argument("--address", help="Ray cluster to run on (default: RAY_ADDRESS, else a "
                   "local instance)")  # fmt: skip
    p.add_argument("--gpu", action="store_true", help="train on every GPU of the cluster "
                   "(one DDP worker each, bf16) and serve with one GPU per replica")  # fmt: skip
    cli.preprocess_flags(
        p, size=SIZE, roi=False,
        seeds="the generated cases and archive, the split, slice sampling, training (initial "
        "weights and data order), the sweep's samples and the evaluation's resampling",
    )  # fmt: skip
    return p


def main(args: argparse.Namespace) -> int:
    clock = _StageClock()  # before the imports: they take seconds on 2 cores
    import ray

    from livseg.data import format_summary, preprocess
    from livseg.evaluate import format_model_comparison
    from livseg.io import storage
    from livseg.runtime import init_ray, largest_node_cpus
    from livseg.synthetic import write_dataset
    from livseg.train import STUDY_ARCHS, TrainConfig, fit_each, format_comparison, is_volumetric

    if args.cases < 3:
        raise UsageError(f"--cases {args.cases}: need at least 3 (one per split)")
    cfg = cli.preprocess_config(args, volume_size=VOLUME_GRID)
    if cfg.roi:
        raise UsageError("roi: the main job makes its ROI shards for the cascade itself; remove "
                         "roi from --config/--set")  # fmt: skip
    init_ray(args.address)
    gpus = int(ray.cluster_resources().get("GPU", 0)) if args.gpu else 0  # what we train on
    if args.gpu and not gpus:
        raise UsageError("--gpu: the Ray cluster has no GPU; drop --gpu, or give --address of a "
                         "cluster with GPU nodes")  # fmt: skip
    raw = args.data or storage.join(args.work, "raw")
    if not args.data:
        if storage.is_s3(raw):
            raise UsageError("--work on S3 needs --data (a LiTS folder or s3:// prefix every node "
                             "reaches): generated cases are written locally; or give a local "
                             "--work")  # fmt: skip
        print(f"[1/8] generating {args.cases} LiTS-like cases in {raw}", flush=True)
        write_dataset(raw, args.cases, seed=cfg.seed, size=cfg.size)
    shards = storage.join(args.work, "shards")
    print(f"[2/8] preprocessing {raw} → {shards} with Ray Data", flush=True)
    record = preprocess(raw, shards, cfg)
    print(format_summary(record, shards))
    clock.lap("start and data")

    archs = args.arch or list(STUDY_ARCHS)
    grid = "×".join(map(str, cfg.volume_size))
    print(f"[3/8] training {', '.join(archs)} with Ray Train ({args.epochs} epochs, 3-D models "
          f"{args.volume_epochs} on the {grid} grid)", flush=True)  # fmt: skip
    # One worker with every CPU of a node is the fastest CPU setup; the recipe is the quality
    # test's. With --gpu: one worker per GPU, a CPU each (the rest feed them through Ray Data).
    cpus = max(1, largest_node_cpus())
    train_cfg = TrainConfig(
        data=shards, epochs=args.epochs, lr=1e-3, workers=gpus or 1,
        cpus_per_worker=1 if args.gpu else cpus, gpu=args.gpu,
        storage=storage.join(args.work, "runs"), name="pipeline", patience=args.epochs,
        seed=cfg.seed,
    )  # fmt: skip
    # The V-Net learns slowly at the 2-D models' rate: at 2e-3 it passed validation liver
    # Dice 0.8 within 100 steps on 32³ grids, at 1e-3 it had not after 190. 128 steps (8
    # epochs of 16 batches of 2 of the 15 training volumes); 80 left it at 0.48 in one run.
    volume_cfg = replace(
        train_cfg, epochs=args.volume_epochs, patience=args.volume_epochs, lr=2e-3,
        steps_per_epoch=args.volume_steps,
    )  # fmt: skip
    slice_cfg = replace(train_cfg, steps_per_epoch=args.steps_per_epoch)
    rows = fit_each(
        [replace(volume_cfg if is_volumetric(arch) else slice_cfg, arch=arch) for arch in archs]
    )
    print(format_comparison(rows))
    clock.lap("training")
    cascade = _cascade(args, raw, cfg, slice_cfg, rows)
    clock.lap("cascade")

    trained = next((r["checkpoint"] for r in rows if r["arch"] == "unet-resnet34"), "")
    best = _sweep(args, train_cfg, cpus, gpus, init=trained)
    clock.lap("sweep")
    # 2-D models first: the first version becomes current, and only a model validated on the
    # same grid can replace it (the V-Net's 3-D grid scores are not comparable).
    candidates = [(r["arch"], r["checkpoint"]) for r in rows if not is_volumetric(r["arch"])]
    candidates.append((f"{best['arch']} (tuned)", best["checkpoint"]))
    candidates += [(r["arch"], r["checkpoint"]) for r in rows if is_volumetric(r["arch"])]
    if cascade:
        candidates.append(cascade)
    summary, report = _evaluate(args, candidates, shards, cfg.seed)
    clock.lap("evaluation")
    registry = storage.join(args.work, "models")
    entry = _register(candidates, summary, registry, shards)
    clock.lap("registering")
    lines = [
        "test split, per-case Dice on original grids:", format_model_comparison(summary),
        f"chosen loss weights: dice={best['dice']:.3f} focal={best['focal']:.3f} "
        f"gamma={best['gamma']:g}",
        f"current model: livseg {entry['version']} ({entry['metric']} {entry['value']:.3f}) "
        f"at {entry['uri']}",
    ]  # fmt: skip
    if storage.is_s3(args.work):  # the generated archive and the token file are local files
        print("[8/8] nightly archive: skipped (--work is on S3; run jobs/segment_archive.py "
              "--archive YOUR_ARCHIVE against the Serve app instead)")  # fmt: skip
        lines.append("nightly archive: skipped (--work on S3)")
    else:
        night = _archive(args, cfg, storage.join(registry, "livseg"))
        counts = night["counts"]
        lines += [
            f"nightly archive: segmented {counts['segmented']}, skipped as done "
            f"{counts['skipped_done']}, not selected "
            f"{counts['not_selected']}, failed {counts['failed']}, flagged for review "
            f"{counts['review']}",
            f"masks: {storage.join(night['output'], 'masks')}",
            f"night summary: {night['html']}",
        ]
        clock.lap("night")
    lines += [f"report: {report}", f"runs: {storage.join(args.work, 'runs', 'pipeline')}",
              f"minutes per stage: {clock}"]  # fmt: skip
    print("\n== summary ==\n" + "\n".join(lines))
    return cli.EXIT_OK


class _StageClock:
    """Wall minutes per stage of this run (a rerun's stages are short: they resume)."""

    def __init__(self) -> None:
        self.minutes: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.minutes[stage] = (now - self._last) / 60
        self._last = now

    def __str__(self) -> str:
        parts = [f"{stage} {m:.1f}" for stage, m in self.minutes.items()]
        return f"{', '.join(parts)} (total {sum(self.minutes.values()):.1f})"


def _cascade(args: argparse.Namespace, raw: str, cfg, slice_cfg, rows: list) -> tuple | None:
    """The two-stage model: the trained unet-resnet34 finds the liver, a second unet-resnet34
    started from its weights and trained on liver-ROI shards (a third of each epoch's slices
    with tumour, half mirrored) the tumour inside its box; bundled, with validation metrics
    measured through the cascade on the original grids (so the registry never compares them
    with the single-stage models' shard-grid numbers)."""
    from livseg.data import format_summary, preprocess
    from livseg.evaluate import bundle_cascade
    from livseg.io import storage
    from livseg.train import fit

    liver = next((r for r in rows if r["arch"] == "unet-resnet34"), None)
    if liver is None:
        print("cascade: skipped (its liver stage is the unet-resnet34, which was not trained)")
        return None
    roi = storage.join(args.work, "shards-roi")
    print(f"[4/8] cascade: preprocessing liver-ROI shards → {roi}, training its tumour stage "
          "(unet-resnet34, from the liver stage's weights)", flush=True)  # fmt: skip
    print(format_summary(preprocess(raw, roi, replace(cfg, roi=True)), roi))
    # The quality test's recipe: stage 2 starts from stage 1's weights, a third of its
    # slices hold tumour (nnU-Net's share) and half are mirrored left/right (inside the liver
    # box no spleen can be mistaken for it); from scratch, 2 × 80 steps left it predicting no
    # tumour on the test split (README, command 1). Its own run name, so a rerun in an older
    # work folder (whose "pipeline-roi" and "pipeline-tumour" runs trained from scratch or
    # without mirroring) does not resume those runs.
    tumour = fit(replace(slice_cfg, data=roi, arch="unet-resnet34", name="pipeline-mirrored",
                         init=liver["checkpoint"], tumour_share=0.33, flip=0.5))  # fmt: skip
    bundle = storage.join(args.work, "runs", "cascade")
    shards = storage.join(args.work, "shards")
    metrics = bundle_cascade(liver["checkpoint"], tumour["checkpoint"], shards, bundle)
    print(f"cascade: {bundle}; validation (original grids) liver "
          f"{metrics['val_liver_dice']:.3f}, tumour {metrics['val_tumour_dice']:.3f}")  # fmt: skip
    return ("cascade", bundle)


def _archive(args: argparse.Namespace, cfg, entry: str) -> dict:
    """The hospital's use: a generated archive (NIfTI, DICOM split across folders, a corrupt
    file) segmented overnight through the Serve app, started here with a bearer token."""
    import secrets

    from livseg.archive import ArchiveConfig, format_summary, segment_archive
    from livseg.io import storage
    from livseg.serve import ServeSettings, start_app, stop_app
    from livseg.synthetic import write_archive

    archive, output = storage.join(args.work, "archive"), storage.join(args.work, "archive-out")
    write_archive(archive, seed=cfg.seed, size=cfg.size)
    token = secrets.token_urlsafe(32)
    token_file = storage.join(args.work, "serve-token")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(token_file)
    with os.fdopen(os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
        f.write(token)  # readable by this user only from the start
    roots = (storage.absolute(archive), storage.absolute(output))  # what replicas may touch
    settings = ServeSettings(model=entry, port=args.serve_port, roots=roots,
                             gpus_per_replica=1.0 if args.gpu else 0.0)  # fmt: skip
    url = start_app(settings, token=token)
    print(f"[8/8] nightly archive {archive} → {output} through the Serve app at {url} "
          f"(bearer token in {token_file})", flush=True)  # fmt: skip
    try:
        night = segment_archive(ArchiveConfig(archive=archive, output=output, progress=False))
    finally:
        stop_app()
    print(format_summary(night))
    return {**night, "output": output}


def _sweep(args: argparse.Namespace, train_cfg, cpus: int, gpus: int, init: str) -> dict:
    """Short trials of unet-resnet34 with sampled loss weights: fine-tuning the trained one
    (``init``) when there is one, so that a few steps per trial compare loss weights on a model
    that already finds the liver; from scratch otherwise."""
    from livseg.io import storage
    from livseg.tune import DRIVER_CPU, SweepConfig, format_best, format_table, parse_space, sweep

    start = "fine-tuning the trained unet-resnet34" if init else "unet-resnet34 from scratch"
    print(f"[5/8] sweeping the loss weights with Ray Tune: {args.samples} short trials, ASHA, "
          f"{start}", flush=True)  # fmt: skip
    sweep_train = replace(
        train_cfg, arch="unet-resnet34", epochs=args.sweep_epochs, steps_per_epoch=15,
        patience=args.sweep_epochs, workers=1,  # on GPUs: one trial per GPU at once
        cpus_per_worker=1 if gpus else cpus - DRIVER_CPU,  # the trial's driver needs one
        init=init,
    )  # fmt: skip
    # From scratch, short trials learn faster at a higher rate than the study's 1e-4: search
    # around 1e-3; fine-tuning searches the study's range, below the rate it was trained at.
    lr = "3e-5:3e-4:log" if init else "3e-4:3e-3:log"
    sweep_cfg = SweepConfig(
        name="pipeline", storage=storage.join(args.work, "sweeps"), samples=args.samples,
        max_concurrent=max(gpus, 1), grace_period=1, reduction_factor=2, seed=train_cfg.seed,
        space=parse_space(f"lr={lr}"),
    )  # fmt: skip
    out = sweep(sweep_train, sweep_cfg)
    early = sum(r["stopped_early"] for r in out["rows"])
    print(f"sweep: {len(out['rows'])} trials, {early} stopped early; {out['csv']}")
    print(format_table(out["rows"]))
    print(format_best(out["best"]))
    best = out["best"]
    print(f"chosen loss weights: dice={best['dice']:.3f} focal={best['focal']:.3f} "
          f"gamma={best['gamma']:g}")  # fmt: skip
    return {**best, "arch": sweep_train.arch}


def _evaluate(args: argparse.Namespace, candidates: list, shards: str, seed: int):
    from livseg.evaluate import (
        case_dice_table,
        choose_lesion_rules,
        format_model_comparison,
        score_models,
        write_evaluation,
    )
    from livseg.io import storage
    from livseg.registry import list_versions

    report_dir, registry = storage.join(args.work, "evaluation"), storage.join(args.work, "models")
    labels = [label for label, _ in candidates]
    print(
        f"[6/8] evaluating {', '.join(labels)} on the test split (original voxel grids), "
        "each 2-D model's lesion rule chosen on the validation split first",
        flush=True,
    )
    # A rerun leaves registered checkpoints' rules alone: a registered version is never
    # changed, and the report must score what the registry serves.
    registered = {card["source"] for card in list_versions(registry, "livseg")}
    skip = frozenset(c for _, c in candidates if storage.absolute(c) in registered)
    for line in choose_lesion_rules(candidates, shards, skip=skip):
        print(line, flush=True)
    results = score_models([c for _, c in candidates], shards, "test", labels=labels)
    summary = write_evaluation(results, report_dir, mc=100, seed=seed)
    for result in results:
        print(case_dice_table(result))
    print(format_model_comparison(summary))
    return summary, storage.join(report_dir, "report.html")


def _register(candidates: list, summary: dict, registry: str, data: str) -> dict:
    """Register every model (once: a rerun finds its versions) with its test metrics; the
    registry promotes a version only over a better one validated on the same cases and grid."""
    from livseg.evaluate import calibrate_before_registering, comparison_rows
    from livseg.io import storage
    from livseg.registry import current, list_versions, register

    print(f"[7/8] registering {len(candidates)} models in {registry}")
    tests = {row["model"]: row for row in comparison_rows(summary)}
    known = {card["source"]: card["version"] for card in list_versions(registry, "livseg")}
    for label, checkpoint in candidates:
        if storage.absolute(checkpoint) in known:
            print(f"  {label}: already registered as {known[storage.absolute(checkpoint)]}")
            continue
        print(f"  {label}: {calibrate_before_registering(checkpoint, data)}")
        test = {"split": "test", **{k: v for k, v in tests[label].items() if k != "model"}}
        done = register(registry, "livseg", checkpoint, parent={"pipeline": label},
                        test_metrics=test)  # fmt: skip
        state = "now current" if done["promoted"] else done["reason"]
        print(f"  {label}: {done['version']} ({done['metric']} {done['value']:.3f}); {state}")
    return current(registry, "livseg")


if __name__ == "__main__":
    sys.exit(cli.run(main, parser()))
