"""Giving memory back to the system: after start-up and after a burst of connections.

CPython frees small objects into its own arenas and larger blocks (transport buffers,
body chunks, parser state) with malloc; glibc keeps the freed heap pages mapped, so the
RSS of a proxy stays at the peak of its busiest second long after the connections are
gone. `release()` runs a full garbage collection and then asks glibc to hand free pages
back (`malloc_trim(0)`, which also returns free pages in the middle of the heap).

It is called once when the listeners are up (the YAML parse, the dataclasses and the
imports leave 1-2 MB of freed heap behind; what is left then is frozen), and by the
proxy's sweep once the open connections have fallen well below their recent peak and
stopped falling (see `BurstWatch`). It costs a few milliseconds, so it never runs on the
request path, and the sweep runs it at most every `MIN_GAP` seconds.
On a libc without `malloc_trim` (musl, macOS) only the collection runs.
"""

from __future__ import annotations

import ctypes
import gc
import time
from collections.abc import Callable

MIN_GAP = 2.0  # seconds between two releases triggered by the sweep
BURST = 256  # open connections that make a burst worth releasing after

_last = 0.0


def _find_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(None)  # the symbols already loaded, libc among them
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


_trim = _find_trim()


def release(freeze: bool = False) -> None:
    """Collect garbage and give the freed heap pages back to the system.

    `freeze` (at start-up) then moves every object left to the collector's permanent
    generation: the modules, the config and the app live as long as the process, and
    the full collections that the request path's allocations trigger no longer walk them.
    """
    global _last
    _last = time.monotonic()
    gc.collect()
    if freeze:
        gc.freeze()
    if _trim is not None:
        _trim(0)


def release_if_due() -> bool:
    """`release()` unless one ran less than MIN_GAP seconds ago; True when it ran."""
    if time.monotonic() - _last < MIN_GAP:
        return False
    release()
    return True


class BurstWatch:
    """Notices the end of a burst: open connections at BURST or more, then down to a quarter
    and no longer falling.

    `peak` is the highest count seen since the last release; the accept path raises it
    directly (one comparison), the sweep calls `check` with the current count (client
    connections and idle backend ones).

    "No longer falling" waits for the sweep after the last one that saw connections go:
    the event loop frees a closed connection's transport and buffers only after the
    sweep that closed it (the idle backend connections of a burst are closed by the
    sweep, a few at a time, `upstream_idle_timeout` after the burst), and a release
    before that gives back little of what they held.
    """

    __slots__ = ("last", "peak")

    def __init__(self) -> None:
        self.peak = 0
        self.last = 0  # the count at the previous check

    def check(self, open_conns: int) -> bool:
        """Release memory if a burst just ended; True when it did."""
        last, self.last = self.last, open_conns
        if open_conns > self.peak:
            self.peak = open_conns
            return False
        if (
            self.peak < BURST
            or open_conns * 4 > self.peak
            or open_conns < last
            or not release_if_due()
        ):
            return False
        self.peak = open_conns
        return True
