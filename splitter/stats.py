"""Per-pool request statistics in one-second buckets: what the rollout judge and the
dashboard read.

    request path:  Recorder.observe(obs)   a few integer increments and one histogram bucket
    every 0.5 s:   Recorder.drain()  ->  Window.add(...)   (a worker ships it to the primary)
    readers:       Window.totals(...), Window.series(...)  over the last `WINDOW` seconds

Rules:

- A second's counts are keyed by the wall-clock second the request ended in, so the
  recorders of several processes (and replicas) add up second by second.
- Per pool and second: requests, errors (5xx or upstream error), the *judged* requests (the
  weighted choice sent them: what a canary is judged on) with their bad count, where a
  client counts at most one bad request per second (one broken client cannot decide a
  verdict alone), the override-header requests likewise, the weighted *assignments* (a
  client placed by the weights without a cookie: each one an independent draw with the
  pool's share as its probability, which the sample-ratio check tests), and the response
  body bytes.
- Latencies go to log-spaced buckets (a quarter of an octave wide, 0.1 ms to ~100 s),
  sparse, one histogram for judged requests and one for the rest, so that a quantile is
  read to within 19% and the share above any threshold can be counted.
- A `Window` keeps `WINDOW` seconds; older ones are dropped as new ones arrive.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping
from typing import Final

from splitter.observe import Observation

__all__ = [
    "LATENCY_BOUNDS",
    "PoolTotals",
    "Recorder",
    "Window",
    "latency_bucket",
]

WINDOW: Final = 300  # seconds kept

# Upper bounds of the latency buckets, in seconds: 0.1 ms * 2^(i/4).
LATENCY_BOUNDS: Final[tuple[float, ...]] = tuple(0.0001 * 2 ** (i / 4) for i in range(80))

# Counter slots of one pool in one second.
REQUESTS, ERRORS, JUDGED, JUDGED_BAD, OVERRIDE, OVERRIDE_BAD, ASSIGNED, BYTES = range(8)
SLOTS: Final = 8

NO_POOL: Final = "none"

# Drained data: second -> pool -> (counts, judged latency histogram, other latency histogram)
PoolSecond = tuple[list[int], dict[int, int], dict[int, int]]
Drained = dict[int, dict[str, PoolSecond]]


def latency_bucket(seconds: float) -> int:
    """The index of the bucket holding `seconds` (len(LATENCY_BOUNDS) for the overflow)."""
    return bisect_left(LATENCY_BOUNDS, seconds)


def bucket_upper(index: int) -> float:
    """The upper bound of bucket `index` (the overflow bucket's is infinite)."""
    return LATENCY_BOUNDS[index] if index < len(LATENCY_BOUNDS) else float("inf")


class Recorder:
    """The request path's observer: accumulates by second and pool until drained."""

    def __init__(self) -> None:
        self.data: Drained = {}
        self.second = -1
        self.current: dict[str, PoolSecond] = {}
        self.bad_clients: set[str] = set()  # clients with a bad request this second

    def observe(self, obs: Observation) -> None:
        second = int(obs.finished)
        if second != self.second:
            self.second = second
            current = self.data.get(second)
            if current is None:
                current = self.data[second] = {}
            self.current = current
            self.bad_clients.clear()
        pool = obs.pool_name or NO_POOL
        entry = self.current.get(pool)
        if entry is None:
            entry = self.current[pool] = ([0] * SLOTS, {}, {})
        counts = entry[0]
        counts[REQUESTS] += 1
        counts[BYTES] += obs.body_bytes
        bad = obs.bad
        if bad:
            counts[ERRORS] += 1
            client = obs.client_id
            if client is not None:
                if client in self.bad_clients:
                    bad = False  # one bad request per client and second is judged
                else:
                    self.bad_clients.add(client)
        bucket = bisect_left(LATENCY_BOUNDS, obs.finished - obs.started)
        if obs.by_override:
            counts[OVERRIDE] += 1
            if bad:
                counts[OVERRIDE_BAD] += 1
            histogram = entry[2]
        elif obs.pool_name is not None:
            counts[JUDGED] += 1
            if bad:
                counts[JUDGED_BAD] += 1
            if obs.assigned:
                counts[ASSIGNED] += 1
            histogram = entry[1]
        else:
            histogram = entry[2]
        histogram[bucket] = histogram.get(bucket, 0) + 1

    def drain(self) -> Drained:
        """What was recorded since the last drain (plain data: it may cross a pipe)."""
        data = self.data
        self.data = {}
        self.second = -1
        self.current = {}
        return data


class PoolTotals:
    """One pool's counts summed over some seconds."""

    __slots__ = ("counts", "judged_latency", "other_latency")

    def __init__(self) -> None:
        self.counts = [0] * SLOTS
        self.judged_latency: dict[int, int] = {}
        self.other_latency: dict[int, int] = {}

    def add(self, entry: PoolSecond) -> None:
        counts, judged, other = entry
        mine = self.counts
        for i in range(SLOTS):
            mine[i] += counts[i]
        for hist, into in ((judged, self.judged_latency), (other, self.other_latency)):
            for bucket, n in hist.items():
                into[bucket] = into.get(bucket, 0) + n

    @property
    def requests(self) -> int:
        return self.counts[REQUESTS]

    @property
    def errors(self) -> int:
        return self.counts[ERRORS]

    def latency(self, judged_only: bool = False) -> dict[int, int]:
        if judged_only:
            return self.judged_latency
        merged = dict(self.other_latency)
        for bucket, n in self.judged_latency.items():
            merged[bucket] = merged.get(bucket, 0) + n
        return merged

    def quantile(self, q: float, judged_only: bool = False) -> float | None:
        """The upper bound of the bucket holding quantile `q` (seconds), None when empty."""
        return quantile(self.latency(judged_only), q)


def quantile(histogram: Mapping[int, int], q: float) -> float | None:
    total = sum(histogram.values())
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= rank:
            return bucket_upper(bucket)
    return bucket_upper(max(histogram))


def count_above(histogram: Mapping[int, int], threshold: float) -> int:
    """Requests in buckets that lie wholly above `threshold` seconds."""
    first = bisect_left(LATENCY_BOUNDS, threshold) + 1  # buckets past the one holding it
    return sum(n for bucket, n in histogram.items() if bucket >= first)


class Window:
    """The last WINDOW seconds of every pool, summed from the recorders' drains."""

    def __init__(self, keep: int = WINDOW) -> None:
        self.keep = keep
        self.seconds: dict[int, dict[str, PoolTotals]] = {}

    def add(self, drained: Drained) -> None:
        for second, pools in drained.items():
            into = self.seconds.get(second)
            if into is None:
                into = self.seconds[second] = {}
            for pool, entry in pools.items():
                totals = into.get(pool)
                if totals is None:
                    totals = into[pool] = PoolTotals()
                totals.add(entry)
        if len(self.seconds) > self.keep:
            newest = max(self.seconds)
            for second in [s for s in self.seconds if s <= newest - self.keep]:
                del self.seconds[second]

    def totals(self, since: float, until: float | None = None) -> dict[str, PoolTotals]:
        """Per pool, the seconds from int(since) up to (not including) `until`."""
        start = int(since)
        end = None if until is None else int(until)
        out: dict[str, PoolTotals] = {}
        for second, pools in self.seconds.items():
            if second < start or (end is not None and second >= end):
                continue
            for pool, totals in pools.items():
                mine = out.get(pool)
                if mine is None:
                    mine = out[pool] = PoolTotals()
                mine.add((totals.counts, totals.judged_latency, totals.other_latency))
        return out

    def series(self, pools: Iterable[str], since: float) -> list[tuple[int, dict[str, list[int]]]]:
        """Per second from `since`, each pool's counts (for charts)."""
        names = list(pools)
        out = []
        for second in sorted(s for s in self.seconds if s >= int(since)):
            row = self.seconds[second]
            out.append((second, {p: list(row[p].counts) for p in names if p in row}))
        return out
