"""What the request path counts: plain dicts, cheap to add to, easy to ship and sum.

A worker process keeps one `Counters` and sends `snapshot()` to the primary, which sums
the latest snapshot of every worker (`merge`) for `/metrics`. Nothing here imports
prometheus-client: the request path never pays for it.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from typing import Any

from splitter.observe.observation import Observation

# A proxy's requests take from a millisecond to many seconds.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
NO_POOL = "none"  # the pool (and route) label of a request refused before one was chosen
DEFAULT_ROUTE = "default"


class Counters:
    """Requests and upstream errors by (route, pool, ...), and a duration histogram per
    (route, pool); "none" for both when a request was refused before a route was chosen."""

    __slots__ = ("grpc", "histograms", "requests", "upstream_errors")

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = {}
        # Per route and pool: the count in each bucket, then over the last bound (+Inf),
        # then the sum.
        self.histograms: dict[tuple[str, str], list[float]] = {}
        self.upstream_errors: dict[tuple[str, str, str], int] = {}
        # gRPC answers by (route, pool, grpc-status as sent).
        self.grpc: dict[tuple[str, str, int], int] = {}

    def observe(self, obs: Observation) -> None:
        self.count_request(obs.pool_name, obs.status, obs.finished - obs.started, obs.route_name)
        code = obs.grpc_status
        if code >= 0:
            where = _where(obs.route_name, obs.pool_name)
            key = (where[0], where[1], code)
            self.grpc[key] = self.grpc.get(key, 0) + 1

    def count_request(
        self, pool: str | None, status: int, duration: float, route: str | None = None
    ) -> None:
        where = _where(route, pool)
        key = (where[0], where[1], status)
        requests = self.requests
        requests[key] = requests.get(key, 0) + 1
        hist = self.histograms.get(where)
        if hist is None:
            hist = self.histograms[where] = [0.0] * (len(BUCKETS) + 2)
        hist[bisect_left(BUCKETS, duration)] += 1
        hist[-1] += duration

    def count_upstream_error(self, pool: str | None, reason: str, route: str | None = None) -> None:
        where = _where(route, pool)
        key = (where[0], where[1], reason)
        self.upstream_errors[key] = self.upstream_errors.get(key, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        """A picklable copy."""
        return {
            "requests": dict(self.requests),
            "histograms": {k: list(v) for k, v in self.histograms.items()},
            "upstream_errors": dict(self.upstream_errors),
            "grpc": dict(self.grpc),
        }

    @classmethod
    def merge(cls, snapshots: Iterable[dict[str, Any]]) -> Counters:
        total = cls()
        for snap in snapshots:
            for key, n in snap["requests"].items():
                total.requests[key] = total.requests.get(key, 0) + n
            for key, n in snap["upstream_errors"].items():
                total.upstream_errors[key] = total.upstream_errors.get(key, 0) + n
            for key, n in snap.get("grpc", {}).items():
                total.grpc[key] = total.grpc.get(key, 0) + n
            for pool, hist in snap["histograms"].items():
                mine = total.histograms.setdefault(pool, [0.0] * (len(BUCKETS) + 2))
                for i, n in enumerate(hist):
                    mine[i] += n
        return total


def _where(route: str | None, pool: str | None) -> tuple[str, str]:
    """The (route, pool) labels: a pool without a route named is the route `default`'s."""
    if pool is None:
        return (route if route is not None else NO_POOL), NO_POOL
    return (route if route is not None else DEFAULT_ROUTE), pool
