"""The statistics recorder's evidence for the judge: client-seconds by request class, the
per-address limit, and the deltas of a second drained as it fills (in-process, fast)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from splitter.control.fleet import merge_drained
from splitter.observe.observation import Observation
from splitter.observe.stats import (
    MAX_CLASSES,
    Drained,
    Recorder,
    Window,
    latency_bucket,
    per_process,
    request_class,
)

T0 = 1_800_000_000.0


def obs(
    client: str | None = "c1",
    *,
    at: float = T0 + 0.5,
    took: float = 0.001,
    status: int = 200,
    pool: str = "canary",
    method: bytes = b"GET",
    target: bytes = b"/",
    addr: str = "192.0.2.1",
    override: bool = False,
) -> Observation:
    o = Observation(at - took)
    o.finished = at
    o.status = status
    o.pool_name = pool
    o.pool_key = pool
    o.client_id = client
    o.method = method
    o.target = target
    o.client_addr = addr
    o.by_override = override
    return o


def evidence(drained: Drained, pool: str = "canary") -> dict[str, tuple[list[int], dict[int, int]]]:
    """The pool's classes over every second drained."""
    merged: Drained = {}
    merge_drained(merged, drained)
    out: dict[str, tuple[list[int], dict[int, int]]] = {}
    for pools in merged.values():
        for klass, (counts, latency) in pools.get(pool, ([], {}, {}, {}))[3].items():
            mine = out.setdefault(klass, ([0, 0], {}))
            mine[0][0] += counts[0]
            mine[0][1] += counts[1]
            for b, n in latency.items():
                mine[1][b] = mine[1].get(b, 0) + n
    return {k: (c, {b: n for b, n in h.items() if n}) for k, (c, h) in out.items()}


def test_request_classes() -> None:
    assert request_class(b"GET", b"/") == "GET /"
    assert request_class(b"GET", b"/api/v1/users?x=1") == "GET /api"
    assert request_class(b"POST", b"/cart?id=3") == "POST /cart"
    assert request_class(b"GET", b"/?q=1") == "GET /"
    assert request_class(b"GET", b"http://example.com/shop/x") == "GET /shop"
    assert request_class(b"GET", b"http://example.com") == "GET /"
    assert request_class(b"OPTIONS", b"*") == "OPTIONS *"
    assert request_class(b"BREW", b"/pot") == "OTHER /pot"
    assert request_class(b"GET", b"/a", override=True) == "!GET /a"
    long = b"/" + b"x" * 500
    assert len(request_class(b"GET", long)) < 60


def test_a_client_counts_once_a_second_per_class_bad_if_any_slowest_latency() -> None:
    rec = Recorder()
    rec.observe(obs(took=0.001))
    rec.observe(obs(took=0.200, status=500))
    rec.observe(obs(took=0.010))
    rec.observe(obs(target=b"/api/x", took=0.002))
    got = evidence(rec.drain())
    assert got["GET /"] == ([1, 1], {latency_bucket(0.200): 1})
    assert got["GET /api"] == ([1, 0], {latency_bucket(0.002): 1})


def test_a_new_second_is_a_new_client_second() -> None:
    rec = Recorder()
    rec.observe(obs(at=T0 + 0.5))
    rec.observe(obs(at=T0 + 1.5))
    data = rec.drain()
    assert [data[s]["canary"][3]["GET /"][0] for s in sorted(data)] == [[1, 0], [1, 0]]


def test_without_a_client_id_every_request_is_a_client_second() -> None:
    rec = Recorder()
    for _ in range(7):
        rec.observe(obs(client=None))
    assert evidence(rec.drain())["GET /"][0] == [7, 0]


def test_a_second_drained_as_it_fills_adds_up_to_the_whole_second() -> None:
    rec = Recorder()
    rec.observe(obs(took=0.001))
    first = rec.drain()
    rec.observe(obs(took=0.300, status=503))  # the same client-second turns bad and slower
    rec.observe(obs(took=0.002))
    second = rec.drain()
    assert evidence(second)["GET /"][0] == [0, 1]  # a delta: no new client-second
    total: Drained = {}
    merge_drained(total, first)
    merge_drained(total, second)
    assert evidence(total)["GET /"] == ([1, 1], {latency_bucket(0.300): 1})
    window = Window()
    window.add(first)
    window.add(second)
    t = window.totals(T0, T0 + 2)["canary"]
    assert t.classes["GET /"][0] == [1, 1]


def test_an_address_gives_at_most_its_allowance_per_second_and_pool() -> None:
    rec = Recorder(max_per_address=100)
    for i in range(150):
        rec.observe(obs(client=f"new{i}", addr="192.0.2.7"))
    for i in range(30):
        rec.observe(obs(client=f"other{i}", addr="192.0.2.8"))
    for i in range(50):
        rec.observe(obs(client=f"blue{i}", addr="192.0.2.7", pool="blue"))
    data = rec.drain()
    assert evidence(data)["GET /"][0] == [130, 0]
    assert evidence(data, "blue")["GET /"][0] == [50, 0]
    # every request is still counted as served
    assert data[int(T0)]["canary"][0][0] == 180


def test_a_client_over_the_allowance_stays_unjudged_for_the_second() -> None:
    rec = Recorder(max_per_address=1)
    rec.observe(obs(client="a"))
    rec.observe(obs(client="b"))  # over: not judged
    rec.observe(obs(client="b", status=500))  # still not judged, though bad
    assert evidence(rec.drain())["GET /"][0] == [1, 0]


def test_override_requests_are_kept_apart() -> None:
    rec = Recorder()
    rec.observe(obs(override=True, status=500))
    rec.observe(obs())
    got = evidence(rec.drain())
    assert got["!GET /"][0] == [1, 1]
    assert got["GET /"][0] == [1, 0]


def test_classes_are_bounded_per_second() -> None:
    rec = Recorder()
    for i in range(MAX_CLASSES + 40):
        rec.observe(obs(client=f"c{i}", target=f"/p{i}".encode(), addr=f"192.0.2.{i}"))
    got = evidence(rec.drain())
    assert len(got) == MAX_CLASSES + 1
    assert got["other"][0] == [40, 0]


def test_workers_share_an_address_allowance() -> None:
    assert per_process(100, 1) == 100
    assert per_process(100, 3) == 34
    assert per_process(1, 8) == 1


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 5),  # client
            st.integers(0, 2),  # class
            st.booleans(),  # bad
            st.floats(0.0001, 2.0),  # latency
            st.booleans(),  # drain after it
        ),
        max_size=60,
    )
)
def test_drains_at_any_moment_give_the_same_client_seconds(
    events: list[tuple[int, int, bool, float, bool]],
) -> None:
    whole = Recorder()
    pieces = Recorder()
    drained: Drained = {}
    for client, klass, bad, took, drain in events:
        for rec in (whole, pieces):
            rec.observe(obs(client=f"c{client}", target=f"/k{klass}".encode(),
                            status=500 if bad else 200, took=took))  # fmt: skip
        if drain:
            merge_drained(drained, pieces.drain())
    merge_drained(drained, pieces.drain())
    assert evidence(drained) == evidence(whole.drain())


def test_a_new_client_is_counted_without_being_remembered() -> None:
    """A client the weights placed just now (no cookie) cannot have come before in this
    second: it is counted, within its address's allowance, and not kept for look-ups."""
    rec = Recorder(max_per_address=3)
    for i in range(5):
        o = obs(client=f"new{i}")
        o.assigned = True
        rec.observe(o)
    assert rec.client_seconds == {}
    assert evidence(rec.drain())["GET /"][0] == [3, 0]
