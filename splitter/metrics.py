"""Prometheus metrics, counted cheaply on the request path and rendered at scrape time.

The request path only adds to plain dicts and lists (`count_request`, `count_upstream_error`);
`collect` turns them into metric families for prometheus-client, in a registry of our own,
when `/metrics` is scraped. Label values are bounded: pool names and backend URLs come from
the config, codes are HTTP status codes, reasons a fixed set; never paths or client input.

Every family is exposed from startup; known label sets (each pool, each backend, each
upstream error reason, each reload result) start at 0.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

# A proxy's requests take from a millisecond to many seconds.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
REASONS = ("connect", "timeout", "protocol")
NO_POOL = "none"

# pool name -> its weight, and (pool, backend url) -> up; read at scrape time.
StateView = Callable[[], tuple[dict[str, float], list[tuple[str, str, bool]]]]


class Metrics(Collector):
    def __init__(self, state_view: StateView) -> None:
        self.state_view = state_view
        self.requests: dict[tuple[str, int], int] = {}
        self.histograms: dict[str, list[float]] = {}  # per bucket counts, then +Inf, then sum
        self.upstream_errors: dict[tuple[str, str], int] = {}
        self.reloads = {"success": 0, "failure": 0}
        self.last_reload_ok = 1
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    # -- the request path ---------------------------------------------------------------

    def count_request(self, pool: str | None, status: int, duration: float) -> None:
        name = pool if pool is not None else NO_POOL
        key = (name, status)
        requests = self.requests
        requests[key] = requests.get(key, 0) + 1
        hist = self.histograms.get(name)
        if hist is None:
            hist = self.histograms[name] = [0.0] * (len(BUCKETS) + 2)
        hist[bisect_left(BUCKETS, duration)] += 1
        hist[-1] += duration

    def count_upstream_error(self, pool: str | None, reason: str) -> None:
        key = (pool if pool is not None else NO_POOL, reason)
        self.upstream_errors[key] = self.upstream_errors.get(key, 0) + 1

    def count_reload(self, ok: bool) -> None:
        self.reloads["success" if ok else "failure"] += 1
        self.last_reload_ok = 1 if ok else 0

    # -- scrape -------------------------------------------------------------------------

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def collect(self) -> Iterator[Metric]:
        weights, backends = self.state_view()
        pools = [*weights, NO_POOL]

        requests = CounterMetricFamily(
            "splitter_requests",
            "Requests answered, by pool and status code.",
            labels=["pool", "code"],
        )
        for (pool, code), count in sorted(self.requests.items()):
            requests.add_metric([pool, str(code)], count)
        yield requests

        duration = HistogramMetricFamily(
            "splitter_request_duration_seconds",
            "Time from the request's first byte to the end of its response.",
            labels=["pool"],
        )
        for pool in sorted(set(pools) | set(self.histograms)):
            hist = self.histograms.get(pool) or [0.0] * (len(BUCKETS) + 2)
            cumulative = 0.0
            buckets = []
            for bound, in_bucket in zip((*BUCKETS, float("inf")), hist[:-1], strict=True):
                cumulative += in_bucket
                buckets.append((_le(bound), cumulative))
            duration.add_metric([pool], buckets, hist[-1])
        yield duration

        weight = GaugeMetricFamily(
            "splitter_pool_weight", "Weight in force, by pool.", labels=["pool"]
        )
        for pool, w in weights.items():
            weight.add_metric([pool], w)
        yield weight

        up = GaugeMetricFamily(
            "splitter_backend_up", "1 when the backend passes its health checks.",
            labels=["pool", "backend"],
        )  # fmt: skip
        for pool, url, is_up in backends:
            up.add_metric([pool, url], 1 if is_up else 0)
        yield up

        errors = CounterMetricFamily(
            "splitter_upstream_errors",
            "Failures talking to backends, by pool and reason.",
            labels=["pool", "reason"],
        )
        seen = {(pool, reason) for pool in weights for reason in REASONS}
        for key in sorted(seen | set(self.upstream_errors)):
            errors.add_metric(list(key), self.upstream_errors.get(key, 0))
        yield errors

        reloads = CounterMetricFamily(
            "splitter_config_reloads", "Config reloads, by result.", labels=["result"]
        )
        for result, count in self.reloads.items():
            reloads.add_metric([result], count)
        yield reloads

        last = GaugeMetricFamily(
            "splitter_config_last_reload_successful", "1 when the last config reload succeeded."
        )
        last.add_metric([], self.last_reload_ok)
        yield last


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)
