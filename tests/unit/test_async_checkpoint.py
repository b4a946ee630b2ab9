"""The checkpoint a training worker writes in the background: a copy taken when the epoch
ended (training goes on changing the model meanwhile), loadable from local and S3 storage."""

from __future__ import annotations

import torch

from livseg.io import storage
from livseg.train import build_model, load_checkpoint, load_train_state, read_meta
from livseg.train.async_checkpoint import cpu_copy, write_checkpoint


def _one_step(model, opt) -> None:
    opt.zero_grad()
    model(torch.randn(2, 1, 32, 32)).square().mean().backward()
    opt.step()


def test_the_written_checkpoint_is_the_state_at_staging_on_local_and_s3(tmp_path, s3_server):
    torch.manual_seed(0)
    model = build_model("unet", 1, 3, "none")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    _one_step(model, opt)
    meta = {"arch": "unet", "in_channels": 1, "classes": 3, "metrics": {"val_score": 0.5}}
    weights = cpu_copy(model.state_dict())
    state = cpu_copy({"optimizer": opt.state_dict(), "state": {"epoch": 1}})
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    moments = {i: s["exp_avg"].clone() for i, s in opt.state_dict()["state"].items()}
    _one_step(model, opt)  # the next epoch trains while the write runs

    bucket = s3_server("async-checkpoints")
    for uri in (str(tmp_path / "run" / "checkpoint_0"), f"{bucket}/run/checkpoint_0"):
        fs, path = storage.filesystem(uri)
        write_checkpoint(fs, path, weights, meta, state)
        loaded, loaded_meta = load_checkpoint(uri)
        assert loaded_meta == meta == read_meta(uri)
        for key, tensor in loaded.state_dict().items():
            assert torch.equal(tensor, expected[key]), key
        assert any(not torch.equal(model.state_dict()[k], expected[k]) for k in expected)

    saved = load_train_state(tmp_path / "run" / "checkpoint_0")["optimizer"]["state"]
    assert saved.keys() == moments.keys()
    assert all(torch.equal(saved[i]["exp_avg"], moments[i]) for i in moments)
    assert load_train_state(tmp_path / "run" / "checkpoint_0")["state"] == {"epoch": 1}
