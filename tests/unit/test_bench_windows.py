"""The benchmark's arithmetic: summaries, paired ratios, the ratio table and its checks."""

from __future__ import annotations

import math

import pytest

from livseg.benchmarks import (
    check_finite,
    interleaved,
    paired_ratio,
    rates,
    ratio_bounds,
    ratio_table,
    summary,
    timed_iter,
)  # fmt: skip


def test_summary_is_median_min_max_and_refuses_broken_windows():
    assert summary([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0}
    for bad in ([], [1.0, math.nan], [1.0, 0.0], [math.inf]):
        with pytest.raises(RuntimeError):
            summary(bad)


def test_paired_ratio_pairs_window_by_window():
    # Pairing: (4/2, 9/3, 1/1) = (2, 3, 1); a ratio of medians would say 4/2 = 2 too, but
    # the range comes from the pairs.
    assert paired_ratio([4.0, 9.0, 1.0], [2.0, 3.0, 1.0]) == {"median": 2.0, "min": 1.0,
                                                               "max": 3.0}  # fmt: skip
    with pytest.raises(ValueError):
        paired_ratio([1.0, 2.0], [1.0])


def test_ratio_bounds_for_sides_run_one_after_the_other():
    # No pairing: median over median, and the widest bounds any two windows allow.
    assert ratio_bounds([4.0, 9.0, 1.0], [2.0, 3.0, 1.0]) == {"median": 2.0, "min": 1 / 3,
                                                               "max": 9.0}  # fmt: skip


def test_rates_warm_up_untimed_then_equal_windows():
    calls = []
    out = rates(lambda: calls.append(1) or 5.0, repeats=3, warmup=2)
    assert len(calls) == 5 and len(out) == 3 and all(r > 0 for r in out)
    with pytest.raises(ValueError):
        rates(lambda: 1.0, repeats=0)


def test_interleaved_alternates_the_order_every_round():
    order = []
    runs = {"a": lambda: order.append("a") or 1.0, "b": lambda: order.append("b") or 1.0}
    out = interleaved(runs, repeats=3)
    assert order == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-up, then A B, B A, A B
    assert {k: len(v) for k, v in out.items()} == {"a": 3, "b": 3}


def test_timed_iter_passes_items_and_records_each_wait():
    waited = []
    assert list(timed_iter(iter([1, 2, 3]), waited)) == [1, 2, 3]
    assert len(waited) == 3 and all(w >= 0 for w in waited)


def test_plain_batches_yield_steps_batches_and_raise_the_threads_error():
    import torch

    from livseg.benchmarks.training import plain_batches

    images, masks = torch.arange(10.0).view(10, 1, 1, 1).expand(10, 1, 2, 2), torch.zeros(10, 2, 2)
    batches = list(plain_batches(images, masks, 4, 5, torch.device("cpu")))
    assert len(batches) == 5 and all(b["image"].shape == (4, 1, 2, 2) for b in batches)
    seen = torch.cat([b["image"][:, 0, 0, 0] for b in batches[:2]]).tolist()
    assert len(set(seen)) == 8  # the first two batches: 8 different rows of one permutation
    with pytest.raises(RuntimeError, match="input thread failed"):
        list(plain_batches(images, "not a tensor", 4, 2, torch.device("cpu")))


def test_ratio_table_judges_each_target_in_its_direction():
    fig = {"median": 1.0, "min": 0.9, "max": 1.1}
    stages = {
        "preprocess": {"speedup": fig, "speedup_target": 1.6,
                       "memory": {"peak_vs_volume": fig, "peak_vs_volume_target_max": 3.0},
                       "scaling": {"skipped": "joined an existing cluster"}},
        "metrics": {"score_case_s": {**fig, "median": 12.0, "max": 13.0},
                    "score_case_s_target_max": 10.0},
    }  # fmt: skip
    rows = {r["name"].split(":")[0] + ":" + r["better"]: r for r in ratio_table(stages)}
    assert len(rows) == 3  # the skipped scaling and the stages that did not run are left out
    assert rows["preprocess:higher"]["met"] is False  # 1.0 < 1.6
    assert rows["preprocess:lower"]["met"] is True  # 1.0 <= 3.0
    assert rows["metrics:lower"]["met"] is False  # 12 s > 10 s


def test_check_finite_names_the_broken_figure():
    check_finite({"a": [1, 2.5, {"b": 3}]})
    with pytest.raises(RuntimeError, match=r"a\[2\]\.b"):
        check_finite({"a": [1, 2.5, {"b": math.nan}]})
