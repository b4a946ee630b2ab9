from dataclasses import replace

from livseg.train import TrainConfig
from livseg.train.loop import epoch_batches


class Shard:
    """A worker's shard of ``rows`` rows: each read yields its batches and records its seed."""

    def __init__(self, rows: int):
        self.rows, self.seeds = rows, []

    def iter_torch_batches(self, batch_size, local_shuffle_seed, **_):
        self.seeds.append(local_shuffle_seed)
        for start in range(0, self.rows, batch_size):
            yield list(range(start, min(start + batch_size, self.rows)))


CFG = TrainConfig(data="x", arch="vnet")


def test_one_pass_without_steps_per_epoch():
    shard = Shard(15)
    batches = list(epoch_batches(shard, 2, CFG, seed=7, device="cpu"))
    assert [len(b) for b in batches] == [2] * 7 + [1] and shard.seeds == [7]


def test_steps_per_epoch_reads_the_shard_again_with_a_new_order():
    shard = Shard(15)
    batches = list(epoch_batches(shard, 2, replace(CFG, steps_per_epoch=19), seed=7, device="cpu"))
    assert len(batches) == 19 and sum(map(len, batches)) == 15 + 15 + 6
    assert len(shard.seeds) == 3 and len(set(shard.seeds)) == 3 and shard.seeds[0] == 7


def test_steps_per_epoch_caps_a_longer_shard_and_an_empty_one_ends():
    shard = Shard(100)
    assert len(list(epoch_batches(shard, 8, replace(CFG, steps_per_epoch=5), 0, "cpu"))) == 5
    assert shard.seeds == [0]
    empty = Shard(0)
    assert list(epoch_batches(empty, 8, replace(CFG, steps_per_epoch=5), 0, "cpu")) == []
    assert len(empty.seeds) == 1
