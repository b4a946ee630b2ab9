"""The checkpoint a training worker writes in the background: a copy taken when the epoch
ended (training goes on changing the model meanwhile), loadable from local and S3 storage."""

from __future__ import annotations

import pytest
import torch

from livseg.io import storage
from livseg.train import build_model, load_checkpoint, load_train_state, read_meta
from livseg.train.async_checkpoint import CheckpointWriter, cpu_copy
from livseg.train.checkpoint import write_checkpoint


def _one_step(model, opt) -> None:
    opt.zero_grad()
    model(torch.randn(2, 1, 32, 32)).square().mean().backward()
    opt.step()


def test_a_cpu_copy_keeps_the_state_it_was_taken_at_on_local_and_s3(tmp_path, s3_server):
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


class _Storage:
    """What the writer asks of Ray's StorageContext: the filesystem, the folder a named
    checkpoint goes to, and the check that this node sees the run's storage."""

    def __init__(self, root, visible: bool = True) -> None:
        import pyarrow.fs

        self.storage_filesystem = pyarrow.fs.LocalFileSystem()
        self.root, self.visible = root, visible

    def build_checkpoint_path_from_name(self, name: str) -> str:
        return str(self.root / name)

    def _check_validation_file(self) -> None:
        if not self.visible:
            raise RuntimeError("Unable to set up cluster storage")


def test_stage_then_upload_writes_the_staged_state_once_at_a_time(tmp_path, monkeypatch):
    import ray.train

    storage = _Storage(tmp_path / "run")
    monkeypatch.setattr(ray.train, "get_context", lambda: type("C", (), {
        "get_storage": staticmethod(lambda: storage)})())  # fmt: skip
    torch.manual_seed(0)
    model = build_model("unet", 1, 3, "none")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    _one_step(model, opt)
    meta = {"arch": "unet", "in_channels": 1, "classes": 3}
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    writer = CheckpointWriter()
    placeholder, upload = writer.stage(model, meta, {"optimizer": opt.state_dict()})
    assert not writer._idle.acquire(blocking=False)  # the next stage waits for this write
    _one_step(model, opt)
    written = upload(placeholder, "checkpoint_1")
    assert written.path == str(tmp_path / "run" / "checkpoint_1")
    loaded, _ = load_checkpoint(written.path)
    assert all(torch.equal(t, expected[k]) for k, t in loaded.state_dict().items())
    upload(placeholder, "checkpoint_1")  # Ray retries a failed S3 upload: one release only
    assert writer._idle.acquire(blocking=False) and not writer._idle.acquire(blocking=False)
    writer._idle.release()

    storage.visible = False  # a worker node that does not see the run's storage
    placeholder, upload = writer.stage(model, meta, {"optimizer": opt.state_dict()})
    with pytest.raises(RuntimeError, match="cluster storage"):
        upload(placeholder, "checkpoint_2")
    assert not (tmp_path / "run" / "checkpoint_2").exists()
    writer.wait()  # the failed write released the writer
