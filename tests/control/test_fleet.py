"""The store's loop at shutdown, in-process: it ends within a bounded time even when a
cancellation is lost on the way (the Redis side runs in tests/e2e/test_store.py)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from splitter.control import fleet
from splitter.control.fleet import Fleet


class Store:
    def __init__(self) -> None:
        self.up, self.closed = True, False

    async def close(self) -> None:
        self.closed = True


class LosesOneCancel(Fleet):
    """A step whose store call completed as the task was cancelled: on Python 3.11,
    asyncio.wait_for (redis-py sends each command through it) then returns the call's
    result, and the cancellation is lost."""

    lost = 0

    async def _step(self) -> None:
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            if self.lost:
                raise
            self.lost += 1


class NeverEnds(Fleet):
    """A step that loses every cancellation and does not return until released."""

    released = False

    async def _step(self) -> None:
        while not self.released:
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                pass


def test_the_loop_ends_at_shutdown_when_a_cancellation_is_lost() -> None:
    store = Store()

    async def run() -> float:
        replica = LosesOneCancel(store, None)  # type: ignore[arg-type]
        replica.start()
        await asyncio.sleep(0.05)
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with asyncio.timeout(3):  # before: stop() never returned
            await replica.stop()
        assert replica.lost == 1
        return loop.time() - started

    assert asyncio.run(run()) < 1.0
    assert store.closed


def test_a_loop_that_does_not_end_is_left_behind_after_a_bounded_time(
    monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    monkeypatch.setattr(fleet, "STOP_TIMEOUT", 0.3)
    store = Store()

    async def run() -> float:
        replica = NeverEnds(store, None)  # type: ignore[arg-type]
        replica.start()
        await asyncio.sleep(0.05)
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with asyncio.timeout(3):
            await replica.stop()
        took = loop.time() - started
        assert replica._task is not None and not replica._task.done()
        replica.released = True  # lets asyncio.run end (it waits for the tasks left)
        return took

    with caplog.at_level(logging.WARNING, logger="splitter.fleet"):
        took = asyncio.run(run())
    assert 0.25 < took < 1.0
    assert store.closed
    assert "did not end within" in caplog.text
