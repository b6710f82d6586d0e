"""splitter.memory: when memory is given back (time is the only thing mocked)."""

from __future__ import annotations

import sys

import pytest

from splitter import memory
from tests.support import FakeClock


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    c = FakeClock()
    monkeypatch.setattr(memory.time, "monotonic", c)
    monkeypatch.setattr(memory, "_last", 0.0)
    return c


@pytest.fixture
def trims(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = memory._trim

    def counting(pad: int) -> int:
        calls.append(pad)
        return real(pad) if real is not None else 0

    monkeypatch.setattr(memory, "_trim", counting)
    return calls


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_malloc_trim_is_found_on_linux() -> None:
    assert memory._trim is not None
    assert memory._trim(0) in (0, 1)


def test_release_if_due_runs_at_most_every_min_gap(clock: FakeClock, trims: list[int]) -> None:
    assert memory.release_if_due()
    assert trims == [0]
    clock.now += memory.MIN_GAP / 2
    assert not memory.release_if_due()
    assert trims == [0]
    clock.now += memory.MIN_GAP
    assert memory.release_if_due()
    assert trims == [0, 0]


def test_burst_watch_releases_once_a_burst_is_over(clock: FakeClock, trims: list[int]) -> None:
    watch = memory.BurstWatch()
    assert not watch.check(memory.BURST + 100)  # the burst is going on
    assert not watch.check(memory.BURST)
    assert not watch.check((memory.BURST + 100) // 4 + 1)  # still above a quarter
    assert trims == []
    assert watch.check(10)
    assert trims == [0]
    assert watch.peak == 10  # a new peak is measured from here
    assert not watch.check(5)


def test_burst_watch_ignores_small_peaks(clock: FakeClock, trims: list[int]) -> None:
    watch = memory.BurstWatch()
    watch.peak = memory.BURST - 1  # as raised by the accept path
    assert not watch.check(0)
    assert trims == []


def test_burst_watch_waits_for_the_gap_then_releases(clock: FakeClock, trims: list[int]) -> None:
    watch = memory.BurstWatch()
    memory.release()  # one just ran (at start-up, say)
    watch.peak = 1000
    assert not watch.check(0)
    assert watch.peak == 1000  # kept: the release is still owed
    clock.now += memory.MIN_GAP
    assert watch.check(0)
    assert trims == [0, 0]
