"""Which cases preprocessing keeps and how it splits them: patients, and second-pass failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from livseg.config import to_dict
from livseg.data import PreprocessConfig, load_split_numpy, preprocess
from livseg.io import nifti_bytes, read_volume
from livseg.synthetic import generate_case, write_case_dicom, write_dataset

CFG = PreprocessConfig(size=64, context=1, volume_size=(32, 32, 32), other_fraction=0.2)
HERE = Path(__file__).resolve().parent


def test_cases_of_one_patient_share_a_split(ray_session, tmp_path):
    """A case → patient table for NIfTI cases, the DICOM PatientID for DICOM series."""
    raw = tmp_path / "raw"
    write_dataset(raw, 6, seed=21, size=64)  # NIfTI cases 0..5
    for case_id in (6, 7, 8):  # DICOM series of one patient, masks as NIfTI
        case = generate_case(case_id, seed=21, size=64)
        write_case_dicom(case, raw / f"volume-{case_id}", patient_id="MRN-0077")
        (raw / f"segmentation-{case_id}.nii.gz").write_bytes(nifti_bytes(case.labels, case.affine))
    table = tmp_path / "patients.csv"
    rows = [f"{c},{'Anna Example' if c < 3 else 'Bert Example'}" for c in range(6)]
    table.write_text("case_id,patient\n" + "\n".join(rows) + "\n")
    cfg = PreprocessConfig(**{**CFG.__dict__, "patients": str(table)})
    record = preprocess(str(raw), str(tmp_path / "shards"), cfg)
    assert record["cases"] == {"ok": 9, "failed": 0}
    index = pq.read_table(tmp_path / "shards" / "index.parquet").to_pylist()
    split_of = {r["case_id"]: r["split"] for r in index}
    for group in ((0, 1, 2), (3, 4, 5), (6, 7, 8)):
        assert len({split_of[c] for c in group}) == 1, (group, split_of)
    assert {split_of[c] for c in (0, 3, 6)} == {"train", "val", "test"}  # no split left empty
    patients = {r["patient"] for r in index}
    assert len(patients) == 3 and all(p.startswith("pt-") for p in patients)
    text = (tmp_path / "shards" / "index.parquet").read_bytes()
    text += (tmp_path / "shards" / "preprocess.json").read_bytes()
    assert b"Anna" not in text and b"MRN-0077" not in text  # identifiers never stored


def test_a_case_failing_the_second_pass_is_reported_not_lost(ray_session, tmp_path):
    """Pass 1 accepts the case, pass 2 fails on it: the index and the record say so, and no
    shard (slices or volumes) holds it."""
    raw, out = tmp_path / "raw", tmp_path / "shards"
    write_dataset(raw, 6, seed=4, size=64)
    depths = {c: read_volume(str(raw / f"volume-{c}.nii.gz")).array.shape[2] for c in range(6)}
    victim = next(c for c, d in depths.items() if list(depths.values()).count(d) == 1)
    script = f"""
import json, ray
from livseg.config import from_dict
from livseg.data import PreprocessConfig, preprocess
ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
         runtime_env={{"worker_process_setup_hook": "fault_hooks.fail_second_pass",
                      "env_vars": {{"PYTHONPATH": {str(HERE)!r},
                                   "LIVSEG_FAIL_DEPTH": "{depths[victim]}"}}}})
cfg = from_dict(PreprocessConfig, json.loads({json.dumps(json.dumps(to_dict(CFG)))}))
record = preprocess({str(raw)!r}, {str(out)!r}, cfg)
print("RECORD" + json.dumps(record))
"""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(done.stdout.split("RECORD", 1)[1])
    assert record["cases"] == {"ok": 5, "failed": 1}
    failure = next(f for f in record["failures"] if f["case_id"] == victim)
    assert "second pass" in failure["error"] and "simulated read failure" in failure["error"]
    assert all(victim not in s["case_ids"] for s in record["splits"].values())
    index = {r["case_id"]: r for r in pq.read_table(out / "index.parquet").to_pylist()}
    assert index[victim]["status"] == "error" and "second pass" in index[victim]["error"]
    assert index[victim]["split"] == ""
    for split in ("train", "val", "test"):
        for kind in ("slices", "volumes"):
            try:
                ids = load_split_numpy(str(out), split, kind)["case_id"]
            except ValueError:  # a split left without cases
                continue
            assert victim not in np.unique(ids)
    # A rerun after an interruption (the record is missing; the shards are done) knows the
    # failure from the first run: the index, the record and the shards still agree.
    (out / "preprocess.json").unlink()
    (out / "index.parquet").unlink()
    again = preprocess(str(raw), str(out), CFG)
    assert again["cases"] == {"ok": 5, "failed": 1}
    index = {r["case_id"]: r for r in pq.read_table(out / "index.parquet").to_pylist()}
    assert index[victim]["status"] == "error" and "second pass" in index[victim]["error"]
