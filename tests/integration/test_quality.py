"""Quality on the path users run: train on the train split (stage 1 on whole slices, stage 2 on
liver-ROI shards), choose each checkpoint and the lesion rule on the validation split, bundle
and register the cascade, then score only the test split through the evaluation code (the
Segmenter on the original voxel grids, post-processing included) — cases that chose nothing.
Stage 1 alone is not scored: it is the coarse box placer, not a fair single-stage baseline
(README command 1 prints the single-stage models beside the cascade).

Budget: 299 s alone on a 2-core AVX-512 machine with one torch thread (the earlier budget: 282 s
there, 11-13 minutes on a 2-core AVX2 CPU without bf16; this one is unmeasured there). Both
stages are unet-resnet18 (1.7× the steps of a unet-resnet34 in the same time: 161 against 272 ms
for 8 × 64², five channels, one thread), and stage 2 starts from stage 1's weights
(``TrainConfig.init``, ``jobs/train.py --set init=…``). Stage 1 only places the liver box, so it
is coarse (64², two epochs of 90 steps; the box of the earlier unet-resnet34 stage 1 held every
test case's whole liver and tumours); stage 2 gets the time (five epochs of 130 steps at 64²
over the liver box: in these 128-px cases the liver spans 45-82 × 26-56 px, median 66 × 40
before the margin, so 64² keeps most of their resolution). The ROI shards shift each case's HU
to its own liver (``livseg.data.roi``)."""

from __future__ import annotations

import time

import pytest

from livseg.data import PreprocessConfig, preprocess
from livseg.evaluate import bundle_cascade, choose_lesion_rule, record_lesion_rule, score_models
from livseg.evaluate.lits import summarise
from livseg.registry import register, resolve_model
from livseg.synthetic import write_dataset
from livseg.train import TrainConfig, fit, read_meta

# LOWERED BAR (issue 12's targets, liver ≥ 0.95, tumour ≥ 0.65, lesion F1 ≥ 0.5, are not
# reached at this budget). This test alone, 2026-12-04, AVX-512, one torch thread (the data
# order is seeded: a run repeats on one machine, not across CPUs or thread counts): liver
# 0.934, tumour 0.437, lesion F1 ≥ 10 mm 0.261 (266 s); before stage 2's mirrored slices
# 0.933, 0.411, 0.273 (six stage-2 epochs: 0.936, 0.474, 0.261, 330 s). Mirroring, two seeds
# with two torch threads: tumour 0.381 → 0.447 and 0.420 → 0.475.
# Prototype runs of the liver shift (six epochs): seed 0 tumour 0.466, seed 1 0.504; without
# the shift 0.403 and 0.288; the earlier test (unet-resnet34 stages, three epochs, no shift)
# 0.277 (0.322-0.329 on a 2-core AVX2 machine). 0.25 leaves 0.19 below this run, about the
# spread seen between seeds; 0.90 for the liver leaves 0.03. Re-measure before raising them,
# or if CI fails near them.
LIVER_MIN, TUMOUR_MIN = 0.90, 0.25
CASES, RAW_SIZE, SIZE, ROI_SIZE = 40, 128, 64, 64


def train(data: str, storage: str, name: str, epochs: int, steps: int, **kw) -> str:
    cfg = TrainConfig(
        data=data, arch="unet-resnet18", epochs=epochs, batch_size=8, lr=1e-3, workers=1,
        cpus_per_worker=2, storage=storage, name=name, steps_per_epoch=steps, patience=epochs,
        **kw,
    )  # fmt: skip
    return fit(cfg)["checkpoint"]


# The earlier, similar budget took 685-794 s alone on a 2-core AVX2 machine and 959-1,084 s beside
# the suite's other test process there (the time also depends on what the trained stages
# predict, e.g. lesion post-processing on validation): the suite's 900 s hang guard is too close.
@pytest.mark.timeout(2400)
def test_cascade_segments_unseen_test_cases(ray_session, tmp_path):
    started = time.time()
    raw, full, roi = (str(tmp_path / p) for p in ("raw", "full", "roi"))
    write_dataset(raw, CASES, seed=5, size=RAW_SIZE)
    record = preprocess(raw, full, PreprocessConfig(size=SIZE))
    roi_record = preprocess(raw, roi, PreprocessConfig(size=ROI_SIZE, roi=True))
    for split in ("train", "val", "test"):  # stage 2 must not have seen the test cases either
        ids = record["splits"][split]["case_ids"]
        assert ids == roi_record["splits"][split]["case_ids"] and ids, split
    # Each case's HU shifted to its own liver: the liver stats lose the spread between cases
    # (unshifted, the box holds the whole liver and the two would be equal).
    assert roi_record["stats"]["std"] < record["stats"]["std"], (roi_record, record)
    timings = {"preprocess": time.time() - started}
    liver = train(full, str(tmp_path / "runs"), "stage1", 2, 90)
    timings["stage 1"] = time.time() - started - sum(timings.values())
    # A third of stage 2's slices hold tumour (nnU-Net's share), half are mirrored left/right
    # (whole slices are not: the spleen sits mirrored at liver-like HU, outside the liver box);
    # it starts from stage 1.
    tumour = train(
        roi, str(tmp_path / "runs"), "stage2", 5, 130, tumour_share=0.33, init=liver, flip=0.5
    )
    timings["stage 2"] = time.time() - started - sum(timings.values())

    bundle = str(tmp_path / "bundle")  # as `jobs/registry.py bundle` makes it
    metrics = bundle_cascade(liver, tumour, full, bundle)
    assert 0 < metrics["val_liver_dice"] <= 1
    assert read_meta(bundle)["validation"]["grid"] == "original"  # never vs shard-grid scores
    record_lesion_rule(bundle, choose_lesion_rule(bundle, full, "val"))  # on validation only
    timings["bundle + rule"] = time.time() - started - sum(timings.values())
    registry = str(tmp_path / "models")
    register(registry, "cascade", bundle)
    served = resolve_model(registry, "cascade")  # what Serve and the archive job would load

    results = score_models([served], full, "test", labels=["cascade"])
    timings["score"] = time.time() - started - sum(timings.values())
    test_ids = set(record["splits"]["test"]["case_ids"])
    report = {}
    for result in results:
        rows = [r for r in result.rows if r["status"] == "ok"]
        assert len(rows) == len(test_ids) and {r["case_id"] for r in rows} == test_ids
        s = summarise(rows)
        report[result.label] = s
        print(result.label, "per case (id: liver, tumour):", ", ".join(
            f"{r['case_id']}: {r['liver_dice']:.3f}, {r['tumour_dice']:.3f}" for r in rows
        ))  # fmt: skip
        print(f"{result.label:13s} test cases {s['cases']} (tumour {s['tumour_cases']}): liver "
              f"{s['liver_dice_mean']:.3f}, tumour {s['tumour_dice_mean']:.3f}, lesion F1 "
              f"{s['tumour_f1']:.3f}, F1 ≥ 10 mm {s['tumour10_f1']:.3f} "
              f"(tp {s['tumour10_tp']}, fp {s['tumour10_fp']}, fn {s['tumour10_fn']})")  # fmt: skip
    print("seconds:", {k: round(v) for k, v in timings.items()})
    cascade = report["cascade"]
    assert cascade["tumour_cases"] >= 3, "too few test cases with tumour to judge"
    assert cascade["tumour10_tp"] + cascade["tumour10_fn"] >= 3, "too few lesions ≥ 10 mm"
    assert cascade["liver_dice_mean"] >= LIVER_MIN, cascade
    assert cascade["tumour_dice_mean"] >= TUMOUR_MIN, cascade
