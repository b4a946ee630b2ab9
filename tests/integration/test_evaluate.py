"""jobs/evaluate.py --pred/--ref on generated cases with known perturbations, and the report."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from job_helpers import ROOT, check_report, run_job

from livseg.evaluate import monte_carlo
from livseg.io import nifti_bytes, read_nifti
from livseg.synthetic import write_dataset


def _write_like(labels_canonical: np.ndarray, ref_path: Path, out_path: Path, flip: bool) -> None:
    """Write canonical labels on the reference's grid; ``flip`` stores the x axis reversed
    (same voxels in space, another orientation on disk)."""
    ref = read_nifti(str(ref_path), labels=True)
    array, affine = labels_canonical, ref.affine
    if flip:
        flipper = np.diag([-1.0, 1.0, 1.0, 1.0])
        flipper[0, 3] = labels_canonical.shape[0] - 1
        array, affine = labels_canonical[::-1], ref.affine @ flipper
    out_path.write_bytes(nifti_bytes(np.ascontiguousarray(array), affine, compress=True))


@pytest.fixture(scope="module")
def masks(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    ref_dir, pred_dir = root / "ref", root / "pred"
    write_dataset(ref_dir, 5, seed=21, size=64)
    pred_dir.mkdir()
    refs = {n: read_nifti(str(ref_dir / f"segmentation-{n}.nii.gz"), labels=True) for n in range(5)}
    # 0: identical, stored in another orientation
    _write_like(
        refs[0].array, ref_dir / "segmentation-0.nii.gz", pred_dir / "segmentation-0.nii.gz", True
    )
    # 1: everything shifted 2 voxels along x
    shifted = np.zeros_like(refs[1].array)
    shifted[2:] = refs[1].array[:-2]
    _write_like(
        shifted, ref_dir / "segmentation-1.nii.gz", pred_dir / "segmentation-1.nii.gz", False
    )
    # 2: tumour labelled as liver (every lesion missed); LiTS test naming
    merged = np.minimum(refs[2].array, 1)
    _write_like(
        merged, ref_dir / "segmentation-2.nii.gz", pred_dir / "test-segmentation-2.nii", False
    )
    # 3: a prediction on another grid (one slice fewer)
    img = nib.load(ref_dir / "segmentation-3.nii.gz")
    cropped = np.asarray(img.dataobj)[:, :, :-1].astype(np.uint8)
    (pred_dir / "segmentation-3.nii.gz").write_bytes(nifti_bytes(cropped, img.affine))
    # 4: no prediction at all
    out = root / "out"
    code = run_job("evaluate", ["--pred", str(pred_dir), "--ref", str(ref_dir), "--out", str(out),
                                "--mc", "30"])  # fmt: skip
    return {"refs": refs, "shifted": shifted, "out": out, "code": code, "ref_dir": ref_dir}


def _rows(out: Path) -> dict[int, dict[str, str]]:
    with open(out / "per_case.csv") as handle:
        return {int(r["case_id"]): r for r in csv.DictReader(handle)}


def test_pred_ref_per_case_numbers(ray_session, masks):
    assert masks["code"] == 0
    rows = _rows(masks["out"])
    assert sorted(rows) == [0, 1, 2, 3, 4]
    same = rows[0]
    assert same["status"] == "ok"
    assert float(same["liver_dice"]) == 1.0 and float(same["liver_assd"]) == 0.0
    assert float(same["liver_hd95"]) == 0.0 and float(same["tumour_fn"]) == 0

    ref1 = masks["refs"][1]
    liver_ref, liver_pred = ref1.array >= 1, masks["shifted"] >= 1
    expected = 2 * (liver_ref & liver_pred).sum() / (liver_ref.sum() + liver_pred.sum())
    shifted = rows[1]
    assert float(shifted["liver_dice"]) == pytest.approx(expected, abs=1e-9)
    # a pure translation by t: the Hausdorff distance is |t| (the extreme face moved by t)
    assert float(shifted["liver_msd"]) == pytest.approx(2 * ref1.spacing[0], rel=1e-6)
    expected_ml = liver_ref.sum() * np.prod(ref1.spacing) / 1000
    assert float(shifted["liver_ml_ref"]) == pytest.approx(expected_ml, rel=1e-6)

    missed = rows[2]
    has_tumour = (masks["refs"][2].array == 2).any()
    assert float(missed["liver_dice"]) == 1.0
    if has_tumour:
        assert float(missed["tumour_dice"]) == 0.0
        assert float(missed["tumour_tp"]) == 0 and float(missed["tumour_fn"]) >= 1
    assert float(missed["tumour_fp"]) == 0

    assert rows[3]["status"] == "error"
    assert "segmentation-3.nii.gz" in rows[3]["error"]
    assert "not on the voxel grid of" in rows[3]["error"]
    assert str(masks["ref_dir"]) in rows[3]["error"]
    assert rows[4]["status"] == "error" and "no predicted" in rows[4]["error"]


def test_summary_and_report(ray_session, masks):
    out = masks["out"]
    summary = json.loads((out / "summary.json").read_text())
    model = summary["models"]["predictions"]
    assert model["cases"] == 3 and len(model["failed"]) == 2
    assert summary["mc_iterations"] == 30
    liver = [v for k, v in model["monte_carlo"].items() if "liver_dice" in k and "mean" in k]
    assert liver and liver[0]["ci95"][0] <= liver[0]["mean"] <= liver[0]["ci95"][1] <= 1.0
    names = check_report(out)
    assert {"boxplots.png", "confusion.png"} <= set(names)
    assert any(n.startswith("case-") for n in names)


def test_monte_carlo_is_deterministic_for_a_seed(masks):
    rows = [{k: v for k, v in r.items()} for r in _rows(masks["out"]).values()]
    for r in rows:
        for k, v in r.items():
            try:
                r[k] = float(v)
            except ValueError:
                pass
    a, b = monte_carlo(rows, 20, seed=3), monte_carlo(rows, 20, seed=3)
    c = monte_carlo(rows, 20, seed=4)
    key = next(k for k in a if "liver_dice" in k and "mean" in k)
    np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a[key], c[key])


def test_bad_arguments_exit_2(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "jobs/evaluate.py", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)  # fmt: skip

    both = run("--pred", "a", "--model", "b", "--out", str(tmp_path))
    assert both.returncode == 2 and "either" in both.stderr
    empty = run("--pred", str(tmp_path), "--ref", str(tmp_path), "--out", str(tmp_path / "o"))
    assert empty.returncode == 2 and "no segmentation-N" in empty.stderr


def test_a_binary_model_is_evaluated_on_the_liver(ray_session, tmp_path):
    """The study's binary labels (liver+tumour vs background): trained, then scored end to end
    through jobs/evaluate.py on liver metrics, tumour left unscored rather than counted as 0."""
    from livseg.data import PreprocessConfig, preprocess
    from livseg.train import TrainConfig, fit

    write_dataset(tmp_path / "raw", 5, seed=8, size=64)
    cfg = PreprocessConfig(size=64, context=1, volume_size=(16, 16, 16), label_mode="binary")
    shards = str(tmp_path / "shards")
    preprocess(str(tmp_path / "raw"), shards, cfg)
    row = fit(TrainConfig(
        data=shards, arch="unet", epochs=1, steps_per_epoch=4, lr=1e-3, workers=1,
        cpus_per_worker=1, storage=str(tmp_path / "runs"), name="binary",
    ))  # fmt: skip
    out = tmp_path / "eval"
    argv = ["--model", row["checkpoint"], "--data", shards, "--out", str(out), "--mc", "5"]
    assert run_job("evaluate", argv) == 0
    summary = json.loads((out / "summary.json").read_text())["models"]["unet"]
    assert summary["cases"] >= 1 and not summary["failed"]
    values = summary["summary"]
    assert 0 <= values["liver_dice_mean"] <= 1 and values["liver_auc_mean"] is not None
    assert values["tumour_dice_mean"] is None and values["tumour_dice_global"] is None
    with open(out / "per_case.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert all(r["status"] == "ok" and r["tumour_dice"] in ("", "nan") for r in rows), rows


def test_the_lesion_rule_is_chosen_on_validation_and_applied(trained_unet, shards, tmp_path):
    """Every candidate rule is scored on the validation cases (original grids); the best one
    is chosen, lands in the checkpoint and the Segmenter uses it."""
    import shutil

    from livseg.evaluate import (
        LESION_RULES,
        choose_lesion_rule,
        choose_lesion_rules,
        record_lesion_rule,
    )
    from livseg.inference import LesionRule, Segmenter

    choice = choose_lesion_rule(trained_unet, shards, "val")
    assert choice["cases"] >= 1 and len(choice["table"]) == len(LESION_RULES)
    objectives = [row["objective"] for row in choice["table"]]
    assert LesionRule(**choice["rule"]) in LESION_RULES
    assert max(objectives) == objectives[LESION_RULES.index(LesionRule(**choice["rule"]))]
    copy = tmp_path / "checkpoint"
    shutil.copytree(trained_unet, copy)
    record_lesion_rule(str(copy), {**choice, "rule": {"min_volume_mm3": 65.0, "fill_holes": True}})
    assert Segmenter.from_checkpoint(str(copy)).lesion_rule == LesionRule(65.0, True)
    assert Segmenter.from_checkpoint(trained_unet).lesion_rule == LesionRule()  # untouched
    # jobs/train.py --lesion-rule and the main job: the same choice, recorded in the checkpoint
    lines = list(choose_lesion_rules([("unet", str(copy))], shards))
    assert len(lines) == 1 and lines[0].startswith(f"unet: lesion rule {choice['rule']} on ")
    assert Segmenter.from_checkpoint(str(copy)).lesion_rule == LesionRule(**choice["rule"])
    # A checkpoint the main job finds registered on a rerun keeps its rule untouched.
    record_lesion_rule(str(copy), {**choice, "rule": {"min_volume_mm3": 20.0, "fill_holes": False}})
    kept = list(choose_lesion_rules([("unet", str(copy))], shards, skip=frozenset({str(copy)})))
    assert len(kept) == 1 and kept[0].startswith("unet: lesion rule kept (")
    assert Segmenter.from_checkpoint(str(copy)).lesion_rule == LesionRule(20.0, False)
