"""Prometheus metrics, counted cheaply on the request path and rendered at scrape time.

The request path only adds to plain dicts and lists (`count_request`, `count_upstream_error`);
`collect` turns them into metric families for prometheus-client, in a registry of our own,
when `/metrics` is scraped. Label values are bounded: route and pool names and backend URLs
come from the config, codes are HTTP status codes, reasons a fixed set; never paths or client input.

Every family is exposed from startup; known label sets (each pool of each route, each
backend, each upstream error reason, each reload result) start at 0. Every series with a
`pool` label has a `route` label too (docs/operations.md#metrics).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from splitter.observe.counters import BUCKETS, NO_POOL, Counters

REASONS = ("connect", "timeout", "protocol")

# Every (route, pool) with its weight, and every (route, pool, backend url) with up; read
# at scrape time.
StateView = Callable[[], tuple[list[tuple[str, str, float]], list[tuple[str, str, str, bool]]]]
# Per route with a rollout: the route, the candidate of its active or last rollout, its
# step (-1 when none is active), its status, and the verdicts reached per (pool, verdict);
# a route has none before its first rollout.
RolloutView = Callable[[], list[tuple[str, str, int, str, dict[tuple[str, str], int]]]]
# The shared store: reachable, and its failed operations so far (None: no store).
StoreView = Callable[[], tuple[bool, int]]
# The proxy listener's TLS: certificate reloads by result, and each certificate's (name,
# notAfter) (None: no TLS).
TLSView = Callable[[], tuple[dict[str, int], list[tuple[str, float]]]]
# Shadow traffic: every (route, pool) that got copies, with its counts by result (same,
# differ, noise, skipped, error); read at scrape time.
ShadowView = Callable[[], list[tuple[str, str, dict[str, int]]]]
SHADOW_RESULTS = ("same", "differ", "noise", "skipped", "error")
ROLLOUT_STATUSES = ("progressing", "paused", "promoted", "rolled_back", "cancelled")
VERDICTS = ("pass", "fail", "inconclusive")


class Metrics(Collector):
    """The counters of this process (`counters`), or, with worker processes, the sum that
    `counters_view` gives; plus what only the primary knows (reloads, weights, health)."""

    def __init__(
        self,
        state_view: StateView,
        counters_view: Callable[[], Counters] | None = None,
        rollout_view: RolloutView | None = None,
        store_view: StoreView | None = None,
        tls_view: TLSView | None = None,
        shadow_view: ShadowView | None = None,
    ) -> None:
        self.state_view = state_view
        self.shadow_view = shadow_view
        self.tls_view = tls_view
        self.rollout_view = rollout_view
        self.store_view = store_view
        self.counters = Counters()
        self.counters_view = counters_view or (lambda: self.counters)
        self.count_request = self.counters.count_request
        self.count_upstream_error = self.counters.count_upstream_error
        self.reloads = {"success": 0, "failure": 0}
        self.last_reload_ok = 1
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def count_reload(self, ok: bool) -> None:
        self.reloads["success" if ok else "failure"] += 1
        self.last_reload_ok = 1 if ok else 0

    # -- scrape -------------------------------------------------------------------------

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def collect(self) -> Iterator[Metric]:
        weights, backends = self.state_view()
        pools = [(route, pool) for route, pool, _ in weights] + [(NO_POOL, NO_POOL)]
        counters = self.counters_view()

        requests = CounterMetricFamily(
            "splitter_requests",
            "Requests answered, by route, pool and status code.",
            labels=["route", "pool", "code"],
        )
        for (route, pool, code), count in sorted(counters.requests.items()):
            requests.add_metric([route, pool, str(code)], count)
        yield requests

        duration = HistogramMetricFamily(
            "splitter_request_duration_seconds",
            "Time from the request's first byte to the end of its response.",
            labels=["route", "pool"],
        )
        for where in sorted(set(pools) | set(counters.histograms)):
            hist = counters.histograms.get(where) or [0.0] * (len(BUCKETS) + 2)
            cumulative = 0.0
            buckets = []
            for bound, in_bucket in zip((*BUCKETS, float("inf")), hist[:-1], strict=True):
                cumulative += in_bucket
                buckets.append((_le(bound), cumulative))
            duration.add_metric(list(where), buckets, hist[-1])
        yield duration

        weight = GaugeMetricFamily(
            "splitter_pool_weight", "Weight in force, by route and pool.", labels=["route", "pool"]
        )
        for route, pool, w in weights:
            weight.add_metric([route, pool], w)
        yield weight

        up = GaugeMetricFamily(
            "splitter_backend_up", "1 when the backend passes its health checks.",
            labels=["route", "pool", "backend"],
        )  # fmt: skip
        for route, pool, url, is_up in backends:
            up.add_metric([route, pool, url], 1 if is_up else 0)
        yield up

        errors = CounterMetricFamily(
            "splitter_upstream_errors",
            "Failures talking to backends, by route, pool and reason.",
            labels=["route", "pool", "reason"],
        )
        seen = {(route, pool, reason) for route, pool, _ in weights for reason in REASONS}
        for key in sorted(seen | set(counters.upstream_errors)):
            errors.add_metric(list(key), counters.upstream_errors.get(key, 0))
        yield errors

        grpc = CounterMetricFamily(
            "splitter_grpc_responses",
            "gRPC answers by route, pool and grpc-status as sent to the client (the "
            "backend's, or splitter's own trailers-only failure).",
            labels=["route", "pool", "grpc_status"],
        )
        for (route, pool, code), count in sorted(counters.grpc.items()):
            grpc.add_metric([route, pool, str(code)], count)
        yield grpc

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
        yield from self._rollout_metrics()
        yield from self._store_metrics()
        yield from self._tls_metrics()
        yield from self._shadow_metrics()

    def _shadow_metrics(self) -> Iterator[Metric]:
        views = self.shadow_view() if self.shadow_view is not None else []
        if not views:
            return  # no route has shadowed yet
        counter = CounterMetricFamily(
            "splitter_shadow",
            "Shadow copies by route, the pool that got them, and result (docs/shadow.md).",
            labels=["route", "pool", "result"],
        )
        for route, pool, counts in views:
            for result in SHADOW_RESULTS:
                counter.add_metric([route, pool, result], counts.get(result, 0))
        yield counter

    def _tls_metrics(self) -> Iterator[Metric]:
        if self.tls_view is None:
            return  # only with a `tls:` section
        reloads, expiry = self.tls_view()
        counter = CounterMetricFamily(
            "splitter_tls_reloads",
            "Certificate reloads after their files changed, by result (error: the old stays).",
            labels=["result"],
        )
        for result in ("success", "error"):
            counter.add_metric([result], reloads.get(result, 0))
        yield counter
        gauge = GaugeMetricFamily(
            "splitter_tls_certificate_expiry_timestamp_seconds",
            "When each certificate in force ends (its notAfter), by its first DNS name.",
            labels=["name"],
        )
        for name, not_after in expiry:
            gauge.add_metric([name], not_after)
        yield gauge

    def _store_metrics(self) -> Iterator[Metric]:
        if self.store_view is None:
            return  # only with a `store:` section
        up, errors = self.store_view()
        gauge = GaugeMetricFamily(
            "splitter_store_up", "1 while the shared store answers; 0 from a failed operation."
        )
        gauge.add_metric([], 1 if up else 0)
        yield gauge
        counter = CounterMetricFamily(
            "splitter_store_errors", "Operations on the shared store that failed."
        )
        counter.add_metric([], errors)
        yield counter

    def _rollout_metrics(self) -> Iterator[Metric]:
        views = self.rollout_view() if self.rollout_view is not None else []
        if not views:
            return  # no series before the first rollout
        gauge = GaugeMetricFamily(
            "splitter_rollout_step", "Step of the active rollout (-1: none).",
            labels=["route", "pool"],
        )  # fmt: skip
        states = GaugeMetricFamily(
            "splitter_rollout_status", "1 for the rollout's current status.",
            labels=["route", "pool", "status"],
        )  # fmt: skip
        counted = CounterMetricFamily(
            "splitter_rollout_verdicts", "Verdicts of the rollout judge, by candidate.",
            labels=["route", "pool", "verdict"],
        )  # fmt: skip
        for route, pool, step, status, verdicts in views:
            gauge.add_metric([route, pool], step)
            for name in ROLLOUT_STATUSES:
                states.add_metric([route, pool, name], 1 if name == status else 0)
            keys = {(pool, v) for v in VERDICTS} | set(verdicts)
            for candidate, verdict in sorted(keys):
                counted.add_metric(
                    [route, candidate, verdict], verdicts.get((candidate, verdict), 0)
                )
        yield gauge
        yield states
        yield counted


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)
