"""The model registry on a local folder: versions, promotion, rollback, concurrent registers."""

from __future__ import annotations

import json
import math
import multiprocessing
import threading
from pathlib import Path

import pytest

from livseg import registry
from livseg.io import conditional, storage

VALIDATION = {"data": "3f2a91c0d4", "split": "val", "case_ids": [3, 7], "grid": [64, 64]}


def fake_checkpoint(
    folder: Path, value: float, metric: str = "val_score", validation: dict | None = VALIDATION
) -> str:
    """A checkpoint folder the registry accepts (it copies files, it does not load them)."""
    folder.mkdir(parents=True)
    meta = {
        "validation": validation,
        "arch": "unet",
        "in_channels": 1,
        "classes": 3,
        "preprocess": {"window": [-100, 400], "size": 64},
        "train": {"data": "shards/", "dice": 0.8, "focal": 0.2, "gamma": 2.0},
        "metrics": {metric: value, "val_loss": 0.3},
    }
    (folder / "meta.json").write_text(json.dumps(meta))
    (folder / "model.pt").write_bytes(f"weights {value}".encode())
    (folder / "train_state.pt").write_bytes(b"optimizer")
    return str(folder)


def test_first_version_becomes_current_with_its_card(tmp_path):
    root = str(tmp_path / "models")
    ckpt = fake_checkpoint(tmp_path / "ckpt", 0.61)
    done = registry.register(root, "livseg", ckpt, parent={"run": "r1", "arch": "unet"})
    assert done["version"] == "v0001" and done["promoted"] and done["current"] == "v0001"
    version = Path(done["uri"])
    assert {p.name for p in version.iterdir()} == {"model.pt", "meta.json", "card.json",
                                                   "claim.json"}  # fmt: skip
    card = json.loads((version / "card.json").read_text())
    assert card["arch"] == "unet" and card["loss"] == {"dice": 0.8, "focal": 0.2, "gamma": 2.0}
    assert card["preprocess"]["size"] == 64 and card["data"] == "shards/"
    assert card["metric"] == "val_score" and card["value"] == 0.61
    assert card["parent"] == {"run": "r1", "arch": "unet"} and card["source"] == ckpt
    assert card["created"].endswith("+00:00") and card["test_metrics"] is None
    pointer = registry.current(root, "livseg")
    assert pointer["version"] == "v0001" and pointer["previous"] == []
    assert pointer["uri"] == done["uri"] == registry.resolve_model(root, "livseg")


def test_scores_from_another_validation_set_are_not_compared(tmp_path):
    """A Dice of other cases (or another grid) is an unlike number: promotion needs force."""
    root = str(tmp_path / "models")
    registry.register(root, "m", fake_checkpoint(tmp_path / "a", 0.6))
    for n, other in enumerate(
        [
            {**VALIDATION, "case_ids": [3, 8]},  # other cases
            {**VALIDATION, "data": "77aa00ee11"},  # another shard set
            {**VALIDATION, "grid": [32, 32, 32]},  # a V-Net's volume grid
            None,  # a checkpoint that does not say what it was scored on
        ]
    ):
        done = registry.register(
            root, "m", fake_checkpoint(tmp_path / f"b{n}", 0.9, validation=other)
        )
        assert not done["promoted"] and done["current"] == "v0001"
        assert "not comparable" in done["reason"] and "force" in done["reason"]
    card = registry.list_versions(root, "m")[1]
    assert card["validation"] == {**VALIDATION, "case_ids": [3, 8]}
    forced = registry.register(
        root, "m", fake_checkpoint(tmp_path / "c", 0.5, validation=None), force=True
    )
    assert forced["promoted"] and registry.current(root, "m")["version"] == forced["version"]
    same = registry.register(root, "m", fake_checkpoint(tmp_path / "d", 0.95))
    assert not same["promoted"]  # current (forced) has no validation record: force again


def test_only_a_better_model_is_promoted_unless_forced(tmp_path):
    root = str(tmp_path / "models")
    registry.register(root, "m", fake_checkpoint(tmp_path / "a", 0.7))
    worse = registry.register(root, "m", fake_checkpoint(tmp_path / "b", 0.6))
    assert worse["version"] == "v0002" and not worse["promoted"]
    assert worse["current"] == "v0001" and "does not beat" in worse["reason"]
    tie = registry.register(root, "m", fake_checkpoint(tmp_path / "c", 0.7))
    assert not tie["promoted"]
    better = registry.register(root, "m", fake_checkpoint(tmp_path / "d", 0.8))
    assert better["promoted"] and better["current"] == "v0004"
    forced = registry.register(root, "m", fake_checkpoint(tmp_path / "e", 0.1), force=True)
    assert forced["promoted"] and forced["current"] == "v0005" and "forced" in forced["reason"]
    listed = registry.list_versions(root, "m")
    assert [c["version"] for c in listed] == ["v0001", "v0002", "v0003", "v0004", "v0005"]
    assert [c["current"] for c in listed] == [False, False, False, False, True]
    assert [p["version"] for p in registry.current(root, "m")["previous"]] == ["v0001", "v0004"]


def test_a_different_metric_needs_force(tmp_path):
    root = str(tmp_path / "models")
    registry.register(root, "m", fake_checkpoint(tmp_path / "a", 0.5))
    ckpt = fake_checkpoint(tmp_path / "b", 0.9, metric="val_liver_dice")
    other = registry.register(root, "m", ckpt, metric="val_liver_dice")
    assert not other["promoted"] and "chosen on val_score" in other["reason"]
    forced = registry.register(root, "m", ckpt, metric="val_liver_dice", force=True)
    assert forced["promoted"] and registry.current(root, "m")["metric"] == "val_liver_dice"


def test_rollback_restores_earlier_versions(tmp_path):
    root = str(tmp_path / "models")
    for i, value in enumerate((0.5, 0.6, 0.7)):
        registry.register(root, "m", fake_checkpoint(tmp_path / str(i), value))
    assert registry.rollback(root, "m")["version"] == "v0002"
    back = registry.rollback(root, "m")
    assert back["version"] == "v0001" and back["value"] == 0.5 and back["previous"] == []
    assert registry.resolve_model(root, "m") == back["uri"]
    with pytest.raises(ValueError, match="no earlier current version"):
        registry.rollback(root, "m")
    assert registry.rollback(root, "m", "v3")["version"] == "v0003"
    assert registry.rollback(root, "m")["version"] == "v0001"  # undoes the explicit rollback
    with pytest.raises(ValueError, match="no version v0009.*known versions: v0001, v0002, v0003"):
        registry.rollback(root, "m", "v0009")
    with pytest.raises(ValueError, match="no version v0009"):
        registry.resolve_model(root, "m", "v0009")
    with pytest.raises(ValueError, match="not a version id"):
        registry.rollback(root, "m", "latest")
    assert registry.resolve_model(root, "m", "v0002").endswith("v0002")


def test_bad_inputs_are_value_errors(tmp_path):
    root = str(tmp_path / "models")
    with pytest.raises(ValueError, match="no current model"):
        registry.resolve_model(root, "m")
    with pytest.raises(ValueError, match="no current model"):
        registry.rollback(root, "m")
    assert registry.list_versions(root, "m") == [] and registry.current(root, "m") is None
    nan = fake_checkpoint(tmp_path / "nan", math.nan)
    with pytest.raises(ValueError, match=r"nan.*'val_score' is nan.*val_loss"):
        registry.register(root, "m", nan)
    with pytest.raises(ValueError, match=r"'val_iou' is missing.*val_loss, val_score"):
        registry.register(root, "m", nan, metric="val_iou")
    with pytest.raises(ValueError, match="not a livseg checkpoint"):
        registry.register(root, "m", str(tmp_path))
    with pytest.raises(ValueError, match="model name"):
        registry.register(root, "../m", fake_checkpoint(tmp_path / "ok", 0.5))
    assert registry.list_versions(root, "m") == []  # nothing half-registered


def test_a_registered_real_model_loads(tmp_path):
    import torch

    from livseg.train import META_FILE, MODEL_FILE, build_model, load_checkpoint, save_checkpoint

    assert registry.CHECKPOINT_FILES == (MODEL_FILE, META_FILE)
    model = build_model("unet", 1, 3, "none")
    meta = {"arch": "unet", "in_channels": 1, "classes": 3, "metrics": {"val_score": 0.4}}
    save_checkpoint(tmp_path / "ckpt", model, meta, train_state={"epoch": 3})
    registry.register(str(tmp_path / "models"), "m", str(tmp_path / "ckpt"))
    loaded, loaded_meta = load_checkpoint(registry.resolve_model(str(tmp_path / "models"), "m"))
    assert loaded_meta == meta
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[key])


def assert_consistent(root: str, name: str, results: list[dict], best: float) -> None:
    """Distinct ids, every version listed, current = best, no promotion lost from the history."""
    versions = [r["version"] for r in results]
    assert len(set(versions)) == len(versions)
    listed = registry.list_versions(root, name)
    assert {c["version"] for c in listed} >= set(versions)
    pointer = json.loads(storage.read_text(storage.join(root, name, "current.json")))
    assert pointer["value"] == best and [c["version"] for c in listed if c["current"]] == [
        pointer["version"]
    ]
    chain = [p["version"] for p in pointer["previous"]] + [pointer["version"]]
    assert {r["version"] for r in results if r["promoted"]} <= set(chain)
    values = [p["value"] for p in pointer["previous"]] + [pointer["value"]]
    assert values == sorted(values)  # each promotion beat the one before


def test_concurrent_registers_in_threads(tmp_path):
    root = str(tmp_path / "models")
    first = registry.register(root, "m", fake_checkpoint(tmp_path / "first", 0.5))
    values = (0.6, 0.9, 0.7, 0.8)
    ckpts = [fake_checkpoint(tmp_path / f"c{i}", v) for i, v in enumerate(values)]
    barrier, results = threading.Barrier(len(ckpts)), []

    def register(ckpt: str) -> None:
        barrier.wait()
        results.append(registry.register(root, "m", ckpt))

    threads = [threading.Thread(target=register, args=(c,)) for c in ckpts]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(results) == len(ckpts)
    assert_consistent(root, "m", [first, *results], best=0.9)
    assert len(registry.list_versions(root, "m")) == 5


def _register_in_process(root: str, ckpt: str, barrier, queue) -> None:
    barrier.wait()
    queue.put(registry.register(root, "m", ckpt))


def test_concurrent_registers_in_processes(tmp_path):
    root = str(tmp_path / "models")
    first = registry.register(root, "m", fake_checkpoint(tmp_path / "first", 0.5))
    ckpts = [fake_checkpoint(tmp_path / "c0", 0.8), fake_checkpoint(tmp_path / "c1", 0.7)]
    ctx = multiprocessing.get_context("spawn")
    barrier, queue = ctx.Barrier(len(ckpts)), ctx.Queue()
    procs = [ctx.Process(target=_register_in_process, args=(root, c, barrier, queue))
             for c in ckpts]  # fmt: skip
    [p.start() for p in procs]
    results = [queue.get(timeout=60) for _ in procs]
    [p.join(timeout=30) for p in procs]
    assert [p.exitcode for p in procs] == [0, 0]
    assert_consistent(root, "m", [first, *results], best=0.8)
    assert len(registry.list_versions(root, "m")) == 3


def test_conditional_writes_on_local_files(tmp_path):
    uri = str(tmp_path / "sub" / "pointer.json")
    assert conditional.read_with_token(uri) == (None, None)
    assert not conditional.write_bytes_if(uri, b"x", "stale-token")
    assert conditional.write_bytes_if(uri, b"one", None)
    assert not conditional.write_bytes_if(uri, b"two", None)  # create-if-absent only once
    data, token = conditional.read_with_token(uri)
    assert data == b"one"
    assert conditional.write_bytes_if(uri, b"two", token)
    assert not conditional.write_bytes_if(uri, b"three", token)  # token is stale now
    assert storage.read_bytes(uri) == b"two"
    assert not [p for p in (tmp_path / "sub").iterdir() if p.name.endswith(".tmp")]


def test_temporaries_of_a_killed_writer_are_swept(tmp_path):
    target = tmp_path / "masks" / "a.nii.gz"
    storage.write_bytes(str(target), b"whole")
    stale = storage.write_temp(target, b"half")  # what a kill between write and rename leaves
    (tmp_path / "masks" / ".notes.tmp").write_text("not ours")  # not write_temp's name
    assert storage.remove_temps(str(tmp_path)) == 1
    assert not stale.exists() and target.read_bytes() == b"whole"
    assert (tmp_path / "masks" / ".notes.tmp").exists()
    assert storage.remove_temps("s3://bucket/prefix") == 0
