"""How many threads torch gets: one per CPU a process holds, at most the operator's cap."""

from __future__ import annotations

import pytest

from livseg.errors import UsageError
from livseg.runtime import TORCH_THREADS_ENV, torch_threads


def test_one_thread_per_whole_cpu_without_a_cap(monkeypatch):
    monkeypatch.delenv(TORCH_THREADS_ENV, raising=False)
    assert [torch_threads(c) for c in (0.25, 1, 1.5, 2, 2.6, 8)] == [1, 1, 1, 2, 2, 8]  # as Ray


def test_the_cap_lowers_never_raises(monkeypatch):
    monkeypatch.setenv(TORCH_THREADS_ENV, "2")
    assert [torch_threads(c) for c in (1, 2, 8)] == [1, 2, 2]


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5", "²"])
def test_a_bad_cap_says_what_to_set(monkeypatch, value):
    monkeypatch.setenv(TORCH_THREADS_ENV, value)
    with pytest.raises(UsageError, match=f"{TORCH_THREADS_ENV}=.*whole number"):
        torch_threads(2)
