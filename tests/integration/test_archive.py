"""The nightly archive job on a messy archive: NIfTI in several orientations, DICOM series
mixed in one folder and split across two, a localizer, a non-CT series, a tilted series, an
empty file, a truncated .nii.gz and a stray text file."""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nibabel as nib
import numpy as np
import pyarrow.parquet as pq
import pydicom
import pytest
from job_helpers import ROOT, mask_checksums, private_ray, run_job, wait_gone
from nibabel import orientations as nio
from ray import serve

from livseg.archive import JOB_APP, SelectionRules, discover
from livseg.io import nifti_bytes, read_dicom_files, storage, to_canonical
from livseg.registry import register
from livseg.serve import APP_NAME, ServeSettings, start_app, stop_app
from livseg.synthetic import generate_case, write_case_dicom


def _rewrite(folder: Path, change) -> None:
    for path in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        change(ds)
        ds.save_as(path, enforce_file_format=True)


def _tilt(ds) -> None:
    """Shear the stack by 15° along y, as a tilted gantry does."""
    z = float(ds.ImagePositionPatient[2])
    x, y = float(ds.ImagePositionPatient[0]), float(ds.ImagePositionPatient[1])
    ds.ImagePositionPatient = [f"{x:.4f}", f"{y + z * np.tan(np.radians(15)):.4f}", f"{z:.4f}"]
    ds.GantryDetectorTilt = "15"


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("hospital")
    expected = {}
    for i, codes in enumerate(("RAS", "LPS")):
        case = generate_case(400 + i, seed=51, size=64)
        ct, affine, _ = to_canonical(case.ct, case.affine)
        ornt = nio.ornt_transform(nio.axcodes2ornt("RAS"), nio.axcodes2ornt(tuple(codes)))
        path = root / "nifti" / f"2026-11-0{i}" / f"ct-{codes}.nii.gz"
        path.parent.mkdir(parents=True)
        path.write_bytes(nifti_bytes(nio.apply_orientation(ct, ornt).astype(np.int16),
                                     affine @ nio.inv_ornt_aff(ornt, ct.shape)))  # fmt: skip
        expected[str(path)] = nib.load(path)
    # series A split across two folders; series B shares the first folder with half of A
    write_case_dicom(generate_case(410, seed=51, size=64), root / "tmp-a")
    write_case_dicom(generate_case(411, seed=51, size=64), root / "pacs" / "mixed")
    files = sorted((root / "tmp-a").glob("*.dcm"))
    (root / "pacs" / "other").mkdir(parents=True)
    for j, f in enumerate(files):
        shutil.move(f, root / "pacs" / ("mixed" if j % 2 else "other") / f.name)
    (root / "tmp-a").rmdir()
    localizer = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    for name, case_id, change in (
        ("localizer", 412, lambda ds: setattr(ds, "ImageType", localizer)),
        ("mr", 413, lambda ds: setattr(ds, "Modality", "MR")),
        ("tilted", 414, _tilt),
    ):  # fmt: skip
        write_case_dicom(generate_case(case_id, seed=51, size=64), root / "pacs" / name)
        _rewrite(root / "pacs" / name, change)
    (root / "broken").mkdir()
    (root / "broken" / "empty.nii.gz").write_bytes(b"")
    good = (root / "nifti" / "2026-11-00" / "ct-RAS.nii.gz").read_bytes()
    (root / "broken" / "truncated.nii.gz").write_bytes(good[: len(good) // 2])
    (root / "pacs" / "mixed" / "notes.txt").write_text("exported by the PACS\n")
    (root / "nifti" / "copies").mkdir()  # the same study exported twice: segmented once
    (root / "nifti" / "copies" / "ct-again.nii.gz").write_bytes(good)
    for f in sorted((root / "pacs" / "mixed").glob("*.dcm"))[:3]:  # a re-export's copies
        shutil.copy(f, root / "pacs" / "other" / f"copy-{f.name}")
    return root, expected


@pytest.fixture(scope="module")
def served_model(trained_unet, tmp_path_factory):
    """The session's trained U-Net as v0001 of this module's own registry."""
    registry = str(tmp_path_factory.mktemp("archive-models"))
    register(registry, "livseg", trained_unet)
    yield {"entry": f"{registry}/livseg", "checkpoint": trained_unet}
    serve.shutdown()  # the next module starts Serve with its own HTTP options


def _check_seg(path: Path, mask: nib.Nifti1Image, files: tuple[str, ...]) -> None:
    """The SEG is BINARY with SNOMED-coded liver and tumour segments and decodes (highdicom,
    frames looked up by the source instances in the reader's slice order) to the mask."""
    import highdicom as hd

    seg = hd.seg.segread(path)
    assert path.name.endswith(".seg.dcm")
    assert seg.SegmentationType == "BINARY" and len(seg.SegmentSequence) == 2
    codes = [s.SegmentedPropertyTypeCodeSequence[0].CodeValue for s in seg.SegmentSequence]
    assert codes == ["10200004", "108369006"]  # SNOMED CT liver, neoplasm
    ordered = read_dicom_files([(f, -1) for f in files], "series").meta["files"]
    uids = [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in ordered]
    pixels = seg.get_pixels_by_source_instance(uids, segment_numbers=[1, 2])
    labels = np.asarray(mask.dataobj).transpose(2, 1, 0)  # (slices, rows, columns)
    assert np.array_equal(pixels[..., 0] > 0, labels >= 1)
    assert np.array_equal(pixels[..., 1] > 0, labels == 2)
    pydicom.dcmread(path)  # plain pydicom reads it too


def _summary(out: Path) -> dict:
    runs = sorted((out / "runs").glob("*.json"), key=lambda p: p.stat().st_mtime)
    return json.loads(runs[-1].read_text())


def _segs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.seg.dcm"))


def _done(out: Path) -> int:
    return len(list(out.glob("ledger/*/done/*.json")))


@pytest.fixture(scope="module")
def first_night(ray_session, archive, served_model, tmp_path_factory):
    """One uninterrupted run, the reference for reruns and interrupted runs. The job starts
    the app (handles only) with this run's archive and output as its roots."""
    root, _ = archive
    out = tmp_path_factory.mktemp("first-night") / "out"
    argv = ["--archive", str(root), "--output", str(out), "--model", served_model["entry"]]
    assert run_job("segment_archive", argv) == 0
    return {"output": out, "argv": argv, "masks": mask_checksums(out / "masks"),
            "segs": _segs(out / "masks")}  # fmt: skip


def test_every_input_gets_a_mask_or_a_reason_and_reruns_skip(
    archive, served_model, first_night, capsys
):
    root, expected = archive
    out, argv = first_night["output"], first_night["argv"]
    report = pq.read_table(out / "report.parquet").to_pylist()
    studies = {s.key: s for s in discover(str(root), SelectionRules())[0]}
    failures = {r["input"]: r for r in pq.read_table(out / "failures.parquet").to_pylist()}
    assert len(report) == 4, [r["input"] for r in report]  # 2 NIfTI + series A + series B
    inputs = {r["input"] for r in report}
    assert set(expected) <= inputs
    split = [r for r in report if "," in r["input"]]  # series A: two folders
    assert len(split) == 1
    assert "pacs/mixed" in split[0]["input"] and "pacs/other" in split[0]["input"]
    for row in report:
        mask = nib.load(out / "masks" / f"{row['key']}.nii.gz")
        if row["input"] in expected:  # the input's exact grid
            assert mask.shape == expected[row["input"]].shape
            assert np.allclose(mask.affine, expected[row["input"]].affine, atol=1e-4)
        assert row["liver_ml"] > 0 and row["version"] == "v0001"
        if row["kind"] == "dicom":  # a DICOM SEG that decodes to the mask's voxels
            _check_seg(Path(row["seg"]), mask, studies[row["key"]].inputs)
        assert "pacs" not in row["key"] and "ct-" not in row["key"]  # keys identify nothing

    def reason(part: str) -> str:
        return next(r["reason"] for i, r in failures.items() if part in i)

    assert "LOCALIZER" in reason("pacs/localizer")
    assert "modality MR" in reason("pacs/mr")
    assert "tilt" in reason("pacs/tilted")
    assert "empty" in reason("empty.nii.gz")
    assert "gzip" in reason("truncated.nii.gz") and failures[
        next(i for i in failures if "truncated" in i)]["stage"] == "segment"  # fmt: skip
    assert "not a NIfTI or DICOM" in reason("notes.txt")
    assert "same content as study n-" in reason("ct-again")
    first = _summary(out)
    assert first["counts"]["segmented"] == 4 and first["counts"]["failed"] == 1
    page = (out / "summary.html").read_text()  # the night for a radiologist
    assert all(row["key"] in page for row in report) and "tilt" in page
    for row in report:  # a review thumbnail per study, linked from the page when flagged
        assert Path(row["thumbnail"]).read_bytes().startswith(b"\x89PNG")
        assert not row["review"] or f"thumbnails/{row['key']}.png" in page
    checksums = mask_checksums(out / "masks")

    assert JOB_APP not in serve.status().applications  # the job removed the app it started
    assert run_job("segment_archive", argv) == 0  # nothing left to do
    second = _summary(out)
    assert second["counts"]["segmented"] == 0 and second["counts"]["skipped_done"] == 4
    assert second["counts"]["failed"] == 0  # a failure is retried only with --retry-failed
    assert second["counts"]["skipped_failed"] == 1
    assert mask_checksums(out / "masks") == checksums
    assert "segmented 0, skipped as done 4" in capsys.readouterr().out

    registry, name = served_model["entry"].rsplit("/", 1)
    register(registry, name, served_model["checkpoint"], force=True)  # v0002 becomes current
    assert run_job("segment_archive", argv) == 0
    third = _summary(out)
    assert third["counts"]["segmented"] == 4 and third["model"].endswith("v0002")
    assert {r["version"] for r in pq.read_table(out / "report.parquet").to_pylist()} == {"v0002"}


def test_an_archive_on_s3(archive, served_model, first_night, s3_server, capsys):
    """The same archive and outputs on the local S3 server: same masks, reports and SEGs."""
    import boto3

    root, _ = archive
    bucket = s3_server("hospital")
    s3 = boto3.client("s3")
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        s3.upload_file(str(path), bucket[5:], f"pacs-export/{path.relative_to(root)}")
    argv = ["--archive", f"{bucket}/pacs-export", "--output", f"{bucket}/night",
            "--model", served_model["entry"]]  # fmt: skip
    # A running "livseg" app (an operator's) whose roots do not hold the bucket: the job uses
    # it, so it refuses before any work. Without it, the job starts its own app.
    start_app(ServeSettings(model=served_model["entry"], roots=(str(root),)),
              token=secrets.token_hex(16), http=False)  # fmt: skip
    assert run_job("segment_archive", argv) == 2
    assert "may not read or write" in capsys.readouterr().err
    assert not storage.exists(f"{bucket}/night/report.parquet")
    stop_app()
    assert run_job("segment_archive", argv) == 0

    def table(name: str) -> list[dict]:
        return pq.read_table(io.BytesIO(storage.read_bytes(f"{bucket}/night/{name}"))).to_pylist()

    report, failures = table("report.parquet"), table("failures.parquet")
    assert len(report) == 4 and len(failures) == 7, [f["input"] for f in failures]
    assert all(r["input"].startswith(f"{bucket}/pacs-export/") for r in report + failures)
    masks = {f"{r['key']}.nii.gz": hashlib.sha256(storage.read_bytes(r["mask"])).hexdigest()
             for r in report}  # fmt: skip
    assert masks == first_night["masks"]  # same voxels and grids as from the local folder
    segs = [r["seg"] for r in report if r["kind"] == "dicom"]
    assert len(segs) == 2 and all(storage.read_bytes(u)[128:132] == b"DICM" for u in segs)
    assert b"Flagged for review" in storage.read_bytes(f"{bucket}/night/summary.html")


def test_a_killed_replica_loses_and_repeats_no_study(archive, served_model, first_night,
                                                     tmp_path, caplog):  # fmt: skip
    import ray

    root, _ = archive
    out = tmp_path / "out"
    argv = ["--archive", str(root), "--output", str(out), "--model", served_model["entry"],
            "--max-in-flight", "1"]  # fmt: skip
    # The operator's app, which the job uses: the test knows its replica.
    start_app(ServeSettings(model=served_model["entry"], roots=(str(root), str(out))),
              token=secrets.token_hex(16), http=False)  # fmt: skip
    with ThreadPoolExecutor(1) as pool:
        job = pool.submit(run_job, "segment_archive", argv)
        deadline = time.time() + 300
        while _done(out) < 1:
            assert not job.done(), job.result()
            assert time.time() < deadline, "no study finished in time"
            time.sleep(0.2)
        handle = serve.get_deployment_handle("ModelServer", app_name=APP_NAME)
        replica = handle.info.remote().result()["replica"]
        ray.kill(ray.get_actor(replica, namespace="serve"), no_restart=True)
        assert job.result(timeout=300) == 0
    stop_app()
    assert "replica lost" in caplog.text, "no study was in flight on the killed replica"
    summary = _summary(out)
    assert summary["counts"]["segmented"] == 4 and summary["counts"]["failed"] == 1
    report = pq.read_table(out / "report.parquet").to_pylist()
    assert sorted(r["key"] for r in report) == sorted(k[:-7] for k in first_night["masks"])
    assert mask_checksums(out / "masks") == first_night["masks"]


def test_a_killed_job_reruns_to_the_same_outputs(archive, served_model, first_night, tmp_path):
    """SIGKILL of the job's process group (its own local Ray, as cron runs it) mid-run, then a
    rerun: the same masks as an uninterrupted run, each study segmented once in all."""
    root, _ = archive
    out = tmp_path / "out"
    cmd = [
        sys.executable, str(ROOT / "jobs" / "segment_archive.py"), "--archive", str(root),
        "--output", str(out), "--model", served_model["entry"], "--max-in-flight", "1",
    ]  # fmt: skip
    with private_ray() as (env, marker), open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)  # fmt: skip
        deadline = time.time() + 300
        while _done(out) < 1:
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.time() < deadline, "no study finished in time"
            time.sleep(0.2)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(30)
        assert wait_gone(marker, 60) == [], "Ray processes of the killed job outlived it"
        done_at_kill = _done(out)
        assert 1 <= done_at_kill < 4, "the kill did not land mid-run"
        for entry in out.glob("ledger/*/done/*.json"):  # no ledger entry without its outputs
            row = json.loads(entry.read_text())
            assert all(Path(row[k]).exists() for k in ("mask", "thumbnail"))
            assert row["kind"] != "dicom" or Path(row["seg"]).exists()
        for mask in (out / "masks").glob("*.nii.gz"):  # whatever is visible is whole
            nib.load(mask).get_fdata()
        stale = storage.write_temp(out / "masks" / "x.nii.gz", b"half")  # a killed write's
        os.utime(stale, (time.time() - 7200,) * 2)  # two hours old
        second = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                                timeout=600)  # fmt: skip
        assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    counts = _summary(out)["counts"]
    assert counts["skipped_done"] == done_at_kill and counts["segmented"] == 4 - done_at_kill
    assert mask_checksums(out / "masks") == first_night["masks"]
    assert _segs(out / "masks") == first_night["segs"]
    assert not stale.exists()  # swept by the rerun
    assert len(pq.read_table(out / "report.parquet")) == 4


def test_dry_run_lists_without_segmenting(archive, tmp_path, capsys):
    root, _ = archive
    argv = ["--archive", str(root), "--output", str(tmp_path / "dry"), "--dry-run"]
    assert run_job("segment_archive", argv) == 0
    out = capsys.readouterr().out
    # 2 NIfTI, 2 DICOM series and the truncated .nii.gz (it fails only when decoded)
    assert out.count("would segment") == 5 and "skip" in out and "LOCALIZER" in out
    assert not (tmp_path / "dry").exists()


def test_a_dicom_series_read_from_scattered_files_matches_the_folder(archive):
    """The replica reads a split series from its file list: same voxels as one folder."""
    root, _ = archive
    from livseg.io import read_dicom_files

    files = sorted(str(p) for p in (root / "pacs").rglob("*.dcm")
                   if pydicom.dcmread(p, stop_before_pixels=True).SeriesInstanceUID
                   == pydicom.dcmread(next((root / "pacs" / "other").glob("*.dcm")),
                                      stop_before_pixels=True).SeriesInstanceUID)  # fmt: skip
    volume = read_dicom_files([(f, -1) for f in files], "series A")
    case = generate_case(410, seed=51, size=64)
    truth, _, _ = to_canonical(case.ct, case.affine)
    assert volume.array.shape == truth.shape
    assert np.abs(volume.array - truth).max() <= 1.0
