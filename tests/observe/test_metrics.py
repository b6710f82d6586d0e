"""Unit tests for splitter.observe.metrics (docs/operations.md#metrics): no network, a fake state
view.

Counts go in through the request-path methods (`count_request`, `count_upstream_error`,
`count_reload`); what comes out is checked by parsing `render()` with prometheus-client's
own text parser, as a scraper would.
"""

from __future__ import annotations

import math

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from splitter.observe.metrics import BUCKETS, Metrics
from tests.support import METRIC_FAMILIES

FAMILIES = METRIC_FAMILIES
REASONS = ("connect", "timeout", "protocol")
LE_BOUNDS = [*BUCKETS, math.inf]


class FakeState:
    """What the app hands the collector: (route, pool, weight) per pool and (route, pool,
    url, up) per backend; `weights` and `backends` are the route `default`'s, `more` other
    routes' pools."""

    def __init__(self) -> None:
        self.weights: dict[str, float] = {"blue": 90, "green": 0, "canary": 10}
        self.backends: list[tuple[str, str, bool]] = [
            ("blue", "http://127.0.0.1:5001", True),
            ("blue", "http://127.0.0.1:5002", False),
            ("green", "http://127.0.0.1:5101", True),
            ("canary", "http://localhost:5201/", True),
        ]
        self.more: list[tuple[str, str, float, str]] = []  # (route, pool, weight, url)

    def __call__(
        self,
    ) -> tuple[list[tuple[str, str, float]], list[tuple[str, str, str, bool]]]:
        weights = [("default", pool, w) for pool, w in self.weights.items()]
        backends = [("default", pool, url, up) for pool, url, up in self.backends]
        weights += [(route, pool, w) for route, pool, w, _ in self.more]
        backends += [(route, pool, url, True) for route, pool, _, url in self.more]
        return weights, backends


@pytest.fixture
def state() -> FakeState:
    return FakeState()


@pytest.fixture
def metrics(state: FakeState) -> Metrics:
    return Metrics(state)


def scrape(m: Metrics) -> dict[str, tuple[str, list[Sample]]]:
    """family name -> (type, samples), from the rendered text."""
    text = m.render().decode("utf-8")
    out: dict[str, tuple[str, list[Sample]]] = {}
    for fam in text_string_to_metric_families(text):
        assert fam.name not in out, f"family {fam.name} rendered twice"
        out[fam.name] = (fam.type, list(fam.samples))
    return out


def samples(m: Metrics, name: str) -> list[Sample]:
    """All samples called `name` (e.g. splitter_requests_total) across families."""
    return [s for _, ss in scrape(m).values() for s in ss if s.name == name]


def value(m: Metrics, name: str, **labels: str) -> float | None:
    """The value of the one sample `name` with exactly `labels`, None when absent; a `pool`
    without a `route` is the route `default`'s (`none`'s for the pool `none`)."""
    if "pool" in labels and "route" not in labels:
        labels["route"] = "none" if labels["pool"] == "none" else "default"
    found = [s.value for s in samples(m, name) if s.labels == labels]
    assert len(found) <= 1, f"{name}{labels} rendered {len(found)} times"
    return found[0] if found else None


def buckets(m: Metrics, pool: str, route: str = "") -> dict[float, float]:
    """le (as a float) -> cumulative count, for one pool's duration histogram."""
    route = route or ("none" if pool == "none" else "default")
    out: dict[float, float] = {}
    for s in samples(m, "splitter_request_duration_seconds_bucket"):
        if s.labels.get("pool") == pool and s.labels.get("route") == route:
            assert set(s.labels) == {"route", "pool", "le"}
            out[float(s.labels["le"])] = s.value
    return out


def expected_buckets(durations: list[float]) -> dict[float, float]:
    return {le: float(sum(1 for d in durations if d <= le)) for le in LE_BOUNDS}


# --------------------------------------------------------------------------- from startup


def test_every_family_present_from_start(metrics: Metrics) -> None:
    fams = scrape(metrics)
    for name, kind in FAMILIES.items():
        assert name in fams, f"{name} missing from a fresh scrape"
        assert fams[name][0] == kind, f"{name} is a {fams[name][0]}, not a {kind}"
    # Nothing beyond the section 7 families (no default process/python collectors).
    assert set(fams) == set(FAMILIES)


def test_fresh_values(metrics: Metrics, state: FakeState) -> None:
    # No request counted yet: no requests_total sample claims a count.
    assert all(s.value == 0 for s in samples(metrics, "splitter_requests_total"))
    # Histogram for every configured pool at 0, every bucket and +Inf present.
    for pool in state.weights:
        assert buckets(metrics, pool) == {le: 0.0 for le in LE_BOUNDS}
        assert value(metrics, "splitter_request_duration_seconds_count", pool=pool) == 0
        assert value(metrics, "splitter_request_duration_seconds_sum", pool=pool) == 0
    # Upstream errors zero-initialised for each configured pool x reason.
    for pool in state.weights:
        for reason in REASONS:
            assert value(metrics, "splitter_upstream_errors_total", pool=pool, reason=reason) == 0
    # Reloads: both results at 0; the last reload counts as successful (the startup config).
    assert value(metrics, "splitter_config_reloads_total", result="success") == 0
    assert value(metrics, "splitter_config_reloads_total", result="failure") == 0
    assert value(metrics, "splitter_config_last_reload_successful") == 1


def test_pool_weight_gauges(metrics: Metrics, state: FakeState) -> None:
    got = {s.labels["pool"]: s.value for s in samples(metrics, "splitter_pool_weight")}
    assert got == {"blue": 90, "green": 0, "canary": 10}
    for s in samples(metrics, "splitter_pool_weight"):
        assert set(s.labels) == {"route", "pool"}
    # Read at scrape time: a weight change shows at the next scrape.
    state.weights = {"blue": 0, "green": 100, "canary": 0}
    got = {s.labels["pool"]: s.value for s in samples(metrics, "splitter_pool_weight")}
    assert got == {"blue": 0, "green": 100, "canary": 0}


def test_fractional_weight(metrics: Metrics, state: FakeState) -> None:
    state.weights = {"blue": 99.5, "green": 0, "canary": 0.5}
    assert value(metrics, "splitter_pool_weight", pool="blue") == 99.5
    assert value(metrics, "splitter_pool_weight", pool="canary") == 0.5


def test_backend_up_gauges(metrics: Metrics, state: FakeState) -> None:
    got = {
        (s.labels["pool"], s.labels["backend"]): s.value
        for s in samples(metrics, "splitter_backend_up")
    }
    # The backend label is the URL exactly as given (as written in the config).
    assert got == {
        ("blue", "http://127.0.0.1:5001"): 1,
        ("blue", "http://127.0.0.1:5002"): 0,
        ("green", "http://127.0.0.1:5101"): 1,
        ("canary", "http://localhost:5201/"): 1,
    }
    state.backends = [(p, u, not up) for p, u, up in state.backends]
    assert value(metrics, "splitter_backend_up", pool="blue", backend="http://127.0.0.1:5001") == 0
    assert value(metrics, "splitter_backend_up", pool="blue", backend="http://127.0.0.1:5002") == 1


def test_same_url_in_two_pools(metrics: Metrics, state: FakeState) -> None:
    state.backends = [
        ("blue", "http://127.0.0.1:7000", True),
        ("canary", "http://127.0.0.1:7000", False),
    ]
    assert value(metrics, "splitter_backend_up", pool="blue", backend="http://127.0.0.1:7000") == 1
    assert (
        value(metrics, "splitter_backend_up", pool="canary", backend="http://127.0.0.1:7000") == 0
    )


# --------------------------------------------------------------------------- requests


def test_requests_counted_by_pool_and_code(metrics: Metrics) -> None:
    for _ in range(3):
        metrics.count_request("blue", 200, 0.01)
    metrics.count_request("blue", 502, 0.01)
    metrics.count_request("canary", 200, 0.01)
    metrics.count_request(None, 400, 0.0001)
    metrics.count_request(None, 431, 0.0001)
    metrics.count_request(None, 400, 0.0001)

    got = {
        (s.labels["pool"], s.labels["code"]): s.value
        for s in samples(metrics, "splitter_requests_total")
        if s.value
    }
    assert got == {
        ("blue", "200"): 3,
        ("blue", "502"): 1,
        ("canary", "200"): 1,
        ("none", "400"): 2,
        ("none", "431"): 1,
    }
    for s in samples(metrics, "splitter_requests_total"):
        assert set(s.labels) == {"route", "pool", "code"}


def test_requests_family_is_a_counter_named_total(metrics: Metrics) -> None:
    metrics.count_request("blue", 200, 0.01)
    fams = scrape(metrics)
    kind, ss = fams["splitter_requests"]
    assert kind == "counter"
    assert {s.name for s in ss} == {"splitter_requests_total"}
    text = metrics.render().decode()
    assert "# TYPE splitter_requests_total counter" in text or (
        "# TYPE splitter_requests counter" in text
    )
    assert 'splitter_requests_total{code="200",pool="blue",route="default"} 1.0' in text


def test_counts_accumulate(metrics: Metrics) -> None:
    for i in range(1, 1001):
        metrics.count_request("green", 200, 0.002)
        if i in (1, 10, 1000):
            assert value(metrics, "splitter_requests_total", pool="green", code="200") == i
            assert value(metrics, "splitter_request_duration_seconds_count", pool="green") == i


@pytest.mark.parametrize(
    ("duration", "first_le"),
    [
        (0.0, 0.001),
        (0.0005, 0.001),
        (0.001, 0.001),  # le is inclusive
        (0.0010001, 0.0025),
        (0.003, 0.005),
        (0.3, 0.5),
        (1.0, 1.0),
        (3.0, 5.0),
        (5.0, 5.0),
        (10.0, 10.0),
        (10.5, math.inf),
        (3600.0, math.inf),
    ],
)
def test_histogram_bucket_for_one_duration(
    metrics: Metrics, duration: float, first_le: float
) -> None:
    metrics.count_request("blue", 200, duration)
    got = buckets(metrics, "blue")
    assert got == {le: (1.0 if le >= first_le else 0.0) for le in LE_BOUNDS}
    assert value(metrics, "splitter_request_duration_seconds_count", pool="blue") == 1
    assert value(metrics, "splitter_request_duration_seconds_sum", pool="blue") == pytest.approx(
        duration
    )
    # Other pools untouched.
    assert buckets(metrics, "canary") == {le: 0.0 for le in LE_BOUNDS}


def test_histogram_cumulative_count_and_sum(metrics: Metrics) -> None:
    durations = [0.0005, 0.0005, 0.002, 0.004, 0.02, 0.2, 0.2, 0.7, 3.0, 3.0, 7.5, 12.0]
    for d in durations:
        metrics.count_request("canary", 200, d)
    metrics.count_request("canary", 503, 0.03)  # every code goes in the pool's histogram
    all_d = [*durations, 0.03]

    got = buckets(metrics, "canary")
    assert got == expected_buckets(all_d)
    # Cumulative: never decreasing, +Inf equals _count.
    ordered = [got[le] for le in LE_BOUNDS]
    assert ordered == sorted(ordered)
    assert got[math.inf] == len(all_d)
    assert value(metrics, "splitter_request_duration_seconds_count", pool="canary") == len(all_d)
    assert value(metrics, "splitter_request_duration_seconds_sum", pool="canary") == pytest.approx(
        sum(all_d)
    )
    # Histogram bucket samples carry only pool and le.
    for s in samples(metrics, "splitter_request_duration_seconds_count"):
        assert set(s.labels) == {"route", "pool"}


def test_histogram_per_pool(metrics: Metrics) -> None:
    metrics.count_request("blue", 200, 0.0005)
    metrics.count_request("green", 200, 3.0)
    metrics.count_request(None, 400, 0.0002)
    assert buckets(metrics, "blue") == expected_buckets([0.0005])
    assert buckets(metrics, "green") == expected_buckets([3.0])
    assert buckets(metrics, "none") == expected_buckets([0.0002])
    assert value(metrics, "splitter_request_duration_seconds_count", pool="none") == 1


def test_histogram_count_matches_requests_total(metrics: Metrics) -> None:
    plan = {("blue", 200): 7, ("blue", 502): 2, ("canary", 200): 4, (None, 414): 3}
    for (pool, code), n in plan.items():
        for _ in range(n):
            metrics.count_request(pool, code, 0.01)
    for pool in ("blue", "canary", "none"):
        total = sum(
            s.value for s in samples(metrics, "splitter_requests_total") if s.labels["pool"] == pool
        )
        count = value(metrics, "splitter_request_duration_seconds_count", pool=pool)
        assert total == count


# --------------------------------------------------------------------------- label hygiene


def test_pool_not_configured_appears_once_counted(metrics: Metrics) -> None:
    # A pool removed by a reload can still finish requests that had chosen it.
    assert not [s for s in samples(metrics, "splitter_requests_total") if s.labels["pool"] == "old"]
    metrics.count_request("old", 200, 0.01)
    metrics.count_upstream_error("old", "timeout")
    assert value(metrics, "splitter_requests_total", pool="old", code="200") == 1
    assert value(metrics, "splitter_request_duration_seconds_count", pool="old") == 1
    assert value(metrics, "splitter_upstream_errors_total", pool="old", reason="timeout") == 1
    # It is not a configured pool: no weight and no backend for it.
    assert value(metrics, "splitter_pool_weight", pool="old") is None
    assert not [s for s in samples(metrics, "splitter_backend_up") if s.labels["pool"] == "old"]


def test_labels_come_only_from_config_and_counts(metrics: Metrics, state: FakeState) -> None:
    for d in (0.001, 0.1, 2.0):
        metrics.count_request("blue", 200, d)
    metrics.count_request(None, 400, 0.0)
    metrics.count_upstream_error("blue", "connect")
    metrics.count_reload(True)
    allowed_pools = {*state.weights, "none"}
    allowed_backends = {url for _, url, _ in state.backends}
    allowed_keys = {"route", "pool", "code", "le", "backend", "reason", "result"}
    for _, ss in scrape(metrics).values():
        for s in ss:
            assert set(s.labels) <= allowed_keys, s
            if "pool" in s.labels:
                assert s.labels["pool"] in allowed_pools, s
                # every series with a pool names its route
                assert s.labels["route"] == ("none" if s.labels["pool"] == "none" else "default")
            if "backend" in s.labels:
                assert s.labels["backend"] in allowed_backends, s
            if "code" in s.labels:
                assert s.labels["code"].isdigit() and len(s.labels["code"]) == 3, s
            if "reason" in s.labels:
                assert s.labels["reason"] in REASONS, s
            if "result" in s.labels:
                assert s.labels["result"] in ("success", "failure"), s


def test_label_values_with_special_characters_round_trip(state: FakeState) -> None:
    # Backend URLs are whatever the config wrote; the text format must escape them.
    url = 'http://127.0.0.1:5001/a"b\\c'
    state.backends = [("blue", url, True)]
    m = Metrics(state)
    assert value(m, "splitter_backend_up", pool="blue", backend=url) == 1


# --------------------------------------------------------------------------- upstream errors


def test_upstream_errors(metrics: Metrics, state: FakeState) -> None:
    metrics.count_upstream_error("blue", "connect")
    metrics.count_upstream_error("blue", "connect")
    metrics.count_upstream_error("canary", "timeout")
    metrics.count_upstream_error("green", "protocol")
    got = {
        (s.labels["pool"], s.labels["reason"]): s.value
        for s in samples(metrics, "splitter_upstream_errors_total")
    }
    expected = {(p, r): 0.0 for p in state.weights for r in REASONS}
    expected[("blue", "connect")] = 2
    expected[("canary", "timeout")] = 1
    expected[("green", "protocol")] = 1
    assert got == expected
    # Upstream errors are not requests: they do not touch requests_total.
    assert not samples(metrics, "splitter_requests_total")


def test_upstream_errors_zero_initialised_for_new_pool(metrics: Metrics, state: FakeState) -> None:
    state.weights = {**state.weights, "red": 5}
    for reason in REASONS:
        assert value(metrics, "splitter_upstream_errors_total", pool="red", reason=reason) == 0
    assert value(metrics, "splitter_pool_weight", pool="red") == 5
    assert value(metrics, "splitter_request_duration_seconds_count", pool="red") == 0


# --------------------------------------------------------------------------- reloads


def test_reloads(metrics: Metrics) -> None:
    metrics.count_reload(True)
    metrics.count_reload(True)
    assert value(metrics, "splitter_config_reloads_total", result="success") == 2
    assert value(metrics, "splitter_config_reloads_total", result="failure") == 0
    assert value(metrics, "splitter_config_last_reload_successful") == 1

    metrics.count_reload(False)
    assert value(metrics, "splitter_config_reloads_total", result="success") == 2
    assert value(metrics, "splitter_config_reloads_total", result="failure") == 1
    assert value(metrics, "splitter_config_last_reload_successful") == 0

    metrics.count_reload(False)
    assert value(metrics, "splitter_config_reloads_total", result="failure") == 2
    assert value(metrics, "splitter_config_last_reload_successful") == 0

    metrics.count_reload(True)
    assert value(metrics, "splitter_config_reloads_total", result="success") == 3
    assert value(metrics, "splitter_config_last_reload_successful") == 1


def test_last_reload_gauge_has_no_labels(metrics: Metrics) -> None:
    [s] = samples(metrics, "splitter_config_last_reload_successful")
    assert s.labels == {}


# --------------------------------------------------------------------------- independence


def test_two_collectors_are_independent(state: FakeState) -> None:
    # Each Metrics has a registry of its own: no "Duplicated timeseries" error, no sharing.
    a, b = Metrics(state), Metrics(state)
    a.count_request("blue", 200, 0.01)
    assert value(a, "splitter_requests_total", pool="blue", code="200") == 1
    assert value(b, "splitter_requests_total", pool="blue", code="200") is None


def test_render_is_text_format(metrics: Metrics) -> None:
    text = metrics.render()
    assert isinstance(text, bytes)
    decoded = text.decode("utf-8")
    assert decoded.endswith("\n")
    for name in FAMILIES:
        assert f"# HELP {name}" in decoded or f"# HELP {name}_total" in decoded


# ------------------------------------------------------------------------------ routes


def test_every_pool_series_names_its_route(metrics: Metrics, state: FakeState) -> None:
    state.more = [("shop", "blue", 100, "http://127.0.0.1:6001"),
                  ("shop", "canary", 0, "http://127.0.0.1:6002")]  # fmt: skip
    metrics.count_request("blue", 200, 0.01, "shop")
    metrics.count_request("blue", 200, 0.01, "shop")
    metrics.count_request("blue", 200, 0.01)  # the route default's blue: another series
    metrics.count_request(None, 404, 0.0001, None)  # no route took it
    metrics.count_request(None, 503, 0.0001, "shop")  # the route took it, no pool was live
    metrics.count_upstream_error("canary", "timeout", "shop")
    requests = {
        (s.labels["route"], s.labels["pool"], s.labels["code"]): s.value
        for s in samples(metrics, "splitter_requests_total")
    }
    assert requests == {
        ("shop", "blue", "200"): 2,
        ("default", "blue", "200"): 1,
        ("none", "none", "404"): 1,
        ("shop", "none", "503"): 1,
    }
    weights = {
        (s.labels["route"], s.labels["pool"]): s.value
        for s in samples(metrics, "splitter_pool_weight")
    }
    assert weights[("shop", "blue")] == 100 and weights[("default", "blue")] == 90
    assert value(metrics, "splitter_upstream_errors_total", route="shop", pool="canary",
                 reason="timeout") == 1  # fmt: skip
    assert value(metrics, "splitter_upstream_errors_total", route="shop", pool="blue",
                 reason="timeout") == 0  # fmt: skip
    assert buckets(metrics, "blue", "shop")[math.inf] == 2
    assert value(metrics, "splitter_backend_up", route="shop", pool="canary",
                 backend="http://127.0.0.1:6002") == 1  # fmt: skip
