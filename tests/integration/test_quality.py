"""Quality: UNET-TLT (unet-resnet34) trained for real on CPU reaches per-case Dice thresholds on
generated cases it never saw (the validation and test splits)."""

from __future__ import annotations

import numpy as np

from livseg.data import PreprocessConfig, preprocess
from livseg.synthetic import write_dataset
from livseg.train import TrainConfig, fit, score_split

LIVER_MIN_MEAN, TUMOUR_MIN_MEAN = 0.90, 0.50


def test_unet_resnet34_segments_unseen_cases(ray_session, tmp_path):
    write_dataset(tmp_path / "raw", 40, seed=5, size=128)
    shards = str(tmp_path / "shards")
    record = preprocess(str(tmp_path / "raw"), shards, PreprocessConfig(size=128))
    cfg = TrainConfig(
        data=shards, arch="unet-resnet34", epochs=4, batch_size=8, lr=1e-3, workers=1,
        cpus_per_worker=2, storage=str(tmp_path / "runs"), name="quality",
    )  # fmt: skip
    row = fit(cfg)
    per_case = {}
    for split in ("val", "test"):
        per_case |= score_split(row["checkpoint"], shards, split)["per_case"]
    train_ids = set(record["splits"]["train"]["case_ids"])
    assert per_case and not train_ids & set(per_case), "scored cases must be unseen"
    liver = np.mean([c["liver"] for c in per_case.values()])
    tumour = [c["tumour"] for c in per_case.values() if c["tumour"] is not None]
    print(f"held-out cases {len(per_case)}: liver {liver:.3f}, tumour {np.mean(tumour):.3f}")
    assert len(tumour) >= 3, "too few held-out cases with tumour to judge"
    assert liver >= LIVER_MIN_MEAN, per_case
    assert np.mean(tumour) >= TUMOUR_MIN_MEAN, per_case
