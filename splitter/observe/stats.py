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
- A `Window` keeps `WINDOW` seconds of one route; older ones are dropped as new ones
  arrive. The recorder keys pools by `route/pool` (one recorder serves every route);
  `by_route` splits a drain into each route's part.

The judge's evidence (docs/rollouts.md#evidence-no-client-can-steer) is kept
beside the counts, per pool, second and *request class* (the method and the first path segment:
`GET /api`, `POST /cart`, `GET /`; see `request_class`), in *client-seconds*: each client
counts at most once per second, pool and class, and that client-second is bad when any of
its requests in it was bad; its latency is the slowest of them (so "slow" is decided by the
reader, against the threshold of the moment). Requests the weights chose and those the
override header chose are kept apart (override classes carry the prefix `OVERRIDE_MARK`).
One client address adds at most `max_per_address` client-seconds per second and pool (all
classes together); beyond, its requests are served and counted as usual but not judged.
A request without a client id (no sticky section) is a client-second of its own.

Drains may come in the middle of a second (the judge looks at the second as it fills), so
a client-second that is already drained and then turns bad, or slower, is drained again as
a *delta*: +1 bad, or -1 in its old latency bucket and +1 in the new one. Summed, the deltas
give exactly the client-seconds of the whole second.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping
from typing import Final

from splitter.observe.observation import Observation

__all__ = [
    "LATENCY_BOUNDS",
    "PoolTotals",
    "Recorder",
    "Window",
    "by_route",
    "latency_bucket",
]

WINDOW: Final = 300  # seconds kept

# Upper bounds of the latency buckets, in seconds: 0.1 ms * 2^(i/4).
LATENCY_BOUNDS: Final[tuple[float, ...]] = tuple(0.0001 * 2 ** (i / 4) for i in range(80))

# Counter slots of one pool in one second.
REQUESTS, ERRORS, JUDGED, JUDGED_BAD, OVERRIDE, OVERRIDE_BAD, ASSIGNED, BYTES = range(8)
SLOTS: Final = 8

NO_POOL: Final = "none"

# Drained data: second -> pool -> (counts, judged latency histogram, other latency histogram,
# request class -> (client-seconds, bad, latency histogram of the client-seconds)).
# The judge's evidence of one class: ([client-seconds, bad ones], {latency bucket of each
# client-second's slowest request: client-seconds}). Plain data: it crosses pipes.
Evidence = tuple[list[int], dict[int, int]]
PoolSecond = tuple[list[int], dict[int, int], dict[int, int], dict[str, Evidence]]
Drained = dict[int, dict[str, PoolSecond]]

OVERRIDE_MARK: Final = "!"  # prefix of the classes of override-header requests
OTHER_CLASS: Final = "other"  # past MAX_CLASSES in one second and pool, a class is this
MAX_CLASSES: Final = 64  # distinct request classes per pool and second
_MAX_SEGMENT: Final = 48  # bytes of the first path segment kept in a class name
_METHODS: Final = frozenset(
    [b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"TRACE"]
)


_class_names: dict[bytes, str] = {}


# method -> target -> class name, for the weights' requests and the override header's
_by_target: tuple[dict[bytes, dict[bytes, str]], dict[bytes, dict[bytes, str]]] = ({}, {})


def request_class(method: bytes, target: bytes, override: bool = False) -> str:
    """`_request_class`, looked up by the whole target first (most requests repeat one)."""
    methods = _by_target[1 if override else 0]
    targets = methods.get(method)
    if targets is None:
        if len(methods) >= 64:
            methods.clear()
        targets = methods[method] = {}
    name = targets.get(target)
    if name is None:
        name = _request_class(method, target, override)
        if len(targets) >= 4096:
            targets.clear()
        targets[target] = name
    return name


def _request_class(method: bytes, target: bytes, override: bool) -> str:
    """The method and the first path segment: `GET /api` for `GET /api/v1/x?y`.

    Unknown methods are `OTHER`; an absolute-form target counts by its path; a target
    that is not a path (`*`) is `*`; a segment is cut at 48 bytes; `override` puts
    `OVERRIDE_MARK` in front. Names are cached.
    """
    path = target
    if not path.startswith(b"/"):
        scheme = path.find(b"://")
        if scheme >= 0:
            slash = path.find(b"/", scheme + 3)
            path = path[slash:] if slash >= 0 else b"/"
        else:
            path = b"*"
    end = min(len(path), _MAX_SEGMENT)
    for stop in (b"/", b"?", b"#", b";"):
        i = path.find(stop, 1, end)
        if i >= 0:
            end = i
    key = (b"!" if override else b"") + method + b" " + path[:end]
    name = _class_names.get(key)
    if name is None:
        verb = method.decode("latin-1") if method in _METHODS else "OTHER"
        name = (OVERRIDE_MARK if override else "") + verb + " " + path[:end].decode("latin-1")
        if len(_class_names) >= 4096:
            _class_names.clear()
        _class_names[key] = name
    return name


def latency_bucket(seconds: float) -> int:
    """The index of the bucket holding `seconds` (len(LATENCY_BOUNDS) for the overflow)."""
    return bisect_left(LATENCY_BOUNDS, seconds)


def bucket_upper(index: int) -> float:
    """The upper bound of bucket `index` (the overflow bucket's is infinite)."""
    return LATENCY_BOUNDS[index] if index < len(LATENCY_BOUNDS) else float("inf")


class Recorder:
    """The request path's observer: accumulates by second and pool until drained."""

    def __init__(self, max_per_address: int = 100) -> None:
        self.data: Drained = {}
        self.second = -1
        self.current: dict[str, PoolSecond] = {}
        self.bad_clients: set[str] = set()  # clients with a bad request this second
        self.max_per_address = max_per_address
        # This second's client-seconds: (pool, class, client) -> [bad (0/1, -1: not
        # judged), latency bucket of the slowest request, class it is counted under].
        self.client_seconds: dict[tuple[str, str, str], list[object]] = {}
        self.per_address: dict[str, dict[str, int]] = {}  # pool -> address -> this second's
        self.classes: dict[str, dict[str, str]] = {}  # pool -> class -> counted as

    def observe(self, obs: Observation) -> None:
        second = int(obs.finished)
        if second != self.second:
            self.second = second
            current = self.data.get(second)
            if current is None:
                current = self.data[second] = {}
            self.current = current
            self.bad_clients.clear()
            self.client_seconds.clear()
            self.per_address.clear()
            self.classes.clear()
        pool = obs.pool_key
        entry = self.current.get(pool)
        if entry is None:
            entry = self.current[pool] = ([0] * SLOTS, {}, {}, {})
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
        if obs.pool_name is not None:
            self._evidence(obs, pool, entry[3], obs.bad, bucket)

    def _evidence(
        self, obs: Observation, pool: str, evidence: dict[str, Evidence], bad: bool, bucket: int
    ) -> None:
        """Count the request's client-second, unless it is counted already or its address
        has given all it may this second."""
        klass = request_class(obs.method, obs.target, obs.by_override)
        # A client placed by the weights just now (no cookie) has an id no earlier request
        # of this second had: nothing to look up, nothing to remember.
        client = None if obs.assigned else obs.client_id
        key: tuple[str, str, str] | None = None
        if client is not None:
            key = (pool, klass, client)
            state = self.client_seconds.get(key)
            if state is not None:
                was_bad = state[0]
                if was_bad == -1:
                    return  # over its address's share: not judged this second
                counted = str(state[2])
                if (bad and was_bad == 0) or bucket > _int(state[1]):
                    item = _evidence_of(evidence, counted)
                    if bad and was_bad == 0:
                        state[0] = 1
                        item[0][1] += 1
                    old = _int(state[1])
                    if bucket > old:
                        latency = item[1]
                        latency[old] = latency.get(old, 0) - 1
                        latency[bucket] = latency.get(bucket, 0) + 1
                        state[1] = bucket
                return
        addresses = self.per_address.get(pool)
        if addresses is None:
            addresses = self.per_address[pool] = {}
        address = obs.client_addr
        given = addresses.get(address, 0)
        if given >= self.max_per_address:
            if key is not None:
                self.client_seconds[key] = [-1, 0, ""]
            return
        addresses[address] = given + 1
        seen = self.classes.get(pool)
        if seen is None:
            seen = self.classes[pool] = {}
        counted_as = seen.get(klass)
        if counted_as is None:
            counted_as = klass
            if len(seen) >= MAX_CLASSES:
                counted_as = (OVERRIDE_MARK if obs.by_override else "") + OTHER_CLASS
            seen[klass] = counted_as
        if key is not None:
            self.client_seconds[key] = [1 if bad else 0, bucket, counted_as]
        item = _evidence_of(evidence, counted_as)
        item[0][0] += 1
        if bad:
            item[0][1] += 1
        latency = item[1]
        latency[bucket] = latency.get(bucket, 0) + 1

    def drain(self) -> Drained:
        """What was recorded since the last drain (plain data: it may cross a pipe). The
        current second's client-seconds are remembered: what they do next is a delta."""
        data = {second: pools for second, pools in self.data.items() if pools}
        self.data = {}
        self.current = {}
        if self.second >= 0:
            self.data[self.second] = self.current
        return data


def per_process(max_per_address: int, processes: int) -> int:
    """Each of `processes` recorders' share of an address's client-seconds per second (a
    client's connections may reach any worker: together they stay within the limit)."""
    return max(1, -(-max_per_address // max(1, processes)))


def _int(value: object) -> int:
    assert isinstance(value, int)
    return value


def _evidence_of(evidence: dict[str, Evidence], klass: str) -> Evidence:
    item = evidence.get(klass)
    if item is None:
        item = evidence[klass] = ([0, 0], {})
    return item


def merge_evidence(into: dict[str, Evidence], more: Mapping[str, Evidence]) -> None:
    """Add `more`'s client-seconds to `into`, class by class."""
    for klass, (counts, latency) in more.items():
        mine = into.get(klass)
        if mine is None:
            mine = into[klass] = ([0, 0], {})
        mine[0][0] += counts[0]
        mine[0][1] += counts[1]
        hist = mine[1]
        for bucket, n in latency.items():
            hist[bucket] = hist.get(bucket, 0) + n


class PoolTotals:
    """One pool's counts summed over some seconds."""

    __slots__ = ("classes", "counts", "judged_latency", "other_latency")

    def __init__(self) -> None:
        self.counts = [0] * SLOTS
        self.judged_latency: dict[int, int] = {}
        self.other_latency: dict[int, int] = {}
        self.classes: dict[str, Evidence] = {}  # the judge's client-seconds by class

    def add(self, entry: PoolSecond) -> None:
        counts, judged, other, classes = entry
        mine = self.counts
        for i in range(SLOTS):
            mine[i] += counts[i]
        for hist, into in ((judged, self.judged_latency), (other, self.other_latency)):
            for bucket, n in hist.items():
                into[bucket] = into.get(bucket, 0) + n
        if classes:
            merge_evidence(self.classes, classes)

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


def by_route(drained: Drained, main: str) -> dict[str, Drained]:
    """Drained statistics split by route, the pools by their own names: the recorder keys
    each pool by `route/pool` (`Observation.pool_key`); a request refused before a route
    was chosen (`none`) goes with the route `main` (the one the calls without a route
    show)."""
    out: dict[str, Drained] = {}
    for second, pools in drained.items():
        for key, entry in pools.items():
            route, slash, pool = key.partition("/")
            if not slash:
                route, pool = main, key
            mine = out.get(route)
            if mine is None:
                mine = out[route] = {}
            row = mine.get(second)
            if row is None:
                row = mine[second] = {}
            row[pool] = entry
    return out


class Window:
    """The last WINDOW seconds of every pool of one route, summed from the recorders'
    drains (split by `by_route`)."""

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
                mine.add(
                    (totals.counts, totals.judged_latency, totals.other_latency, totals.classes)
                )
        return out

    def series(self, pools: Iterable[str], since: float) -> list[tuple[int, dict[str, list[int]]]]:
        """Per second from `since`, each pool's counts (for charts)."""
        names = list(pools)
        out = []
        for second in sorted(s for s in self.seconds if s >= int(since)):
            row = self.seconds[second]
            out.append((second, {p: list(row[p].counts) for p in names if p in row}))
        return out
