"""End to end: hostile clients, hostile backends and a hostile network
(docs/configuration.md#proxying, 4a).

- Every request of the corpus in `tests/hostile_requests.py` is refused with a JSON error
  that echoes nothing, on a connection splitter then closes, and never reaches the
  backend; a well-formed request right after is served as usual.
- Refusals are logged at most once per second per reason, without a traceback.
- A backend answering garbage, conflicting framing, invalid fields, a short body or a
  reset gives the client a 502 or a visibly aborted stream, never a complete response,
  and its connection is not used again; redirects pass through untouched and unfollowed.
- Through `tests.faultproxy.FaultProxy`: latency, read timeouts, a black hole, resets
  and a bandwidth cap on the way to a real backend.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faultproxy import FaultProxy
from tests.hostile_requests import CORPUS, Hostile
from tests.rawbackend import RawBackend, guarded_splitter
from tests.rawhttp import Response, exchange, parse_responses
from tests.support import (
    LOCALHOST,
    NO_HEALTH_DOWN,
    SplitterProc,
    http_request,
    pools_config,
    start_splitter,
    stream_sha256,
)

# --------------------------------------------------------------------------- helpers


def _unique() -> str:
    return uuid.uuid4().hex


def _exchange(port: int, data: bytes, timeout: float = 5) -> tuple[bytes, str]:
    """Send `data` on a new connection; everything received, and how it ended:
    "eof", "reset" or "timeout" (the peer kept the connection open)."""
    return exchange(port, data, timeout)


def _get(path: str = "/", rid: str | None = None, version: bytes = b"HTTP/1.1") -> bytes:
    rid = rid or _unique()
    return b"GET %s %s\r\nHost: x\r\nX-Request-Id: %s\r\nConnection: close\r\n\r\n" % (
        path.encode(),
        version,
        rid.encode(),
    )


def _assert_ok_after(port: int) -> None:
    """A well-formed request with its own X-Request-Id, on a new connection, gets exactly
    its own id back."""
    rid = "after-" + _unique()
    data, how = _exchange(port, _get("/after", rid))
    assert how == "eof", (how, data)
    responses = parse_responses(data)
    assert len(responses) == 1, data
    resp = responses[0]
    assert (resp.status, resp.body) == (200, rid.encode()), data
    assert resp.header("X-Request-Id") == rid


def _json_error(resp: Response, statuses: set[int] | frozenset[int]) -> dict[str, Any]:
    assert resp.status in statuses, (resp.status, resp.body)
    assert (resp.header("Content-Type") or "").startswith("application/json"), resp.headers
    assert resp.complete
    body = json.loads(resp.body)
    assert isinstance(body, dict) and body.get("error"), body
    assert body.get("status") == resp.status, body
    return body


# --------------------------------------------------------------------------- hostile requests


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RawBackend, SplitterProc]]:
    """One splitter (default limits) in front of one recording backend, for the module."""
    with guarded_splitter(tmp_path_factory.mktemp("hostile")) as pair:
        yield pair


def test_corpus_is_large_and_distinct() -> None:
    assert len(CORPUS) >= 60
    assert len({c.name for c in CORPUS}) == len(CORPUS)
    assert len({c.marker for c in CORPUS}) == len(CORPUS)
    for c in CORPUS:
        assert c.marker in c.data, c.name
        assert c.statuses <= {400, 413, 414, 431, 501, 505}, c.name


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_hostile_request_is_refused_and_never_forwarded(
    guarded: tuple[RawBackend, SplitterProc], case: Hostile
) -> None:
    backend, proc = guarded
    data, how = _exchange(proc.proxy_port, case.data, timeout=3)
    responses = parse_responses(data)
    assert len(responses) == 1, f"expected one answer, got {data[:500]!r}"
    _json_error(responses[0], case.statuses)
    assert how != "timeout", "splitter kept the connection open"
    assert case.marker not in data, "the answer echoes the input"
    _assert_ok_after(proc.proxy_port)
    time.sleep(0.05)  # anything forwarded would have arrived by now
    assert case.marker not in backend.received(), "a refused request reached the backend"


_REFUSAL_LINE = re.compile(r"refused a request with (\d+): (.*) \(from ")


def test_refusal_flood_is_logged_once_per_second_per_reason(
    guarded: tuple[RawBackend, SplitterProc],
) -> None:
    _, proc = guarded
    before = len(proc.stderr_text())
    start = time.monotonic()
    statuses: Counter[int] = Counter()
    for _ in range(2):
        for case in CORPUS:
            data, _ = _exchange(proc.proxy_port, case.data, timeout=2)
            with contextlib.suppress(ValueError):
                statuses[parse_responses(data)[0].status] += 1
    elapsed = time.monotonic() - start
    time.sleep(0.3)
    stderr = proc.stderr_text()[before:]
    assert "Traceback" not in stderr, stderr[-3000:]
    leaked = [c.name for c in CORPUS if c.marker.decode() in stderr]
    assert not leaked, f"markers in the log: {leaked}"
    per_reason: Counter[str] = Counter()
    for text in stderr.splitlines():
        m = _REFUSAL_LINE.search(text)
        if m:
            per_reason[f"{m.group(1)} {m.group(2)}"] += 1
    assert per_reason, f"no refusal was logged; answers {statuses}; stderr {stderr[-2000:]!r}"
    bound = math.ceil(elapsed) + 1
    over = {reason: n for reason, n in per_reason.items() if n > bound}
    assert not over, f"more than {bound} lines in {elapsed:.1f}s: {over}"
    assert proc.running


# --------------------------------------------------------------------------- hostile backends


def _one_backend(url: str, tmp_path: Path, **extra: Any) -> SplitterProc:
    extra.setdefault("health_check", NO_HEALTH_DOWN)
    return start_splitter(pools_config({"main": url}, {"main": 100}, **extra), tmp_path)


def _is_aborted(data: bytes, how: str) -> bool:
    """True when what the client got is visibly cut short: framing not complete, or a
    reset instead of a clean close (or nothing at all)."""
    if not data:
        return True
    responses = parse_responses(data)
    if len(responses) != 1:
        return False
    resp = responses[0]
    framed = resp.header("Content-Length") is not None or resp.chunked
    return not resp.complete if framed else how == "reset"


BAD_HEADS = [
    pytest.param(b"HELLO\r\n\r\n", id="garbage"),
    pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64, id="binary"),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nok\r\n0\r\n\r\n",
        id="cl-and-te",
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n"
        b"2\r\nok\r\n0\r\n\r\n",
        id="te-and-cl",
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!", id="two-cls"
    ),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok", id="cl-list"),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: 2\r\n\r\nok", id="space-in-name"
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nX-Bad : x\r\nContent-Length: 2\r\n\r\nok", id="space-before-colon"
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nX-B\x00d: x\r\nContent-Length: 2\r\n\r\nok", id="nul-in-name"
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nX-Bad: a\x01b\r\nContent-Length: 2\r\n\r\nok", id="ctl-in-value"
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nX-Bad: a\rb\r\nContent-Length: 2\r\n\r\nok", id="cr-in-value"
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nX-Bad: a\r\n b\r\nContent-Length: 2\r\n\r\nok", id="obs-fold"
    ),
    pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nok", id="te-unknown"),
    pytest.param(b"HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok", id="bad-status"),
]


@pytest.mark.parametrize("reply", BAD_HEADS)
def test_backend_bad_head_is_502_and_its_connection_discarded(
    raw_backend: Callable[..., RawBackend], tmp_path: Path, reply: bytes
) -> None:
    backend = raw_backend(reply=reply, after="keep")  # would serve the next request too
    proc = _one_backend(backend.url, tmp_path)
    try:
        for _ in range(3):
            data, how = _exchange(proc.proxy_port, _get("/bad-head"))
            assert how in ("eof", "reset"), (how, data)
            responses = parse_responses(data)
            assert len(responses) == 1, data
            _json_error(responses[0], {502})
            assert b"ok" not in responses[0].body
        time.sleep(0.1)
        counts = backend.request_counts()
        assert counts and max(counts) == 1, f"a bad connection was used again: {counts}"
        assert sum(counts) >= 3
        assert proc.running
    finally:
        proc.stop()


def test_good_backend_connection_is_reused(
    raw_backend: Callable[..., RawBackend], tmp_path: Path
) -> None:
    """The control for the test above: a valid keep-alive answer keeps its connection."""
    backend = raw_backend(reply=b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", after="keep")
    proc = _one_backend(backend.url, tmp_path)
    try:
        for _ in range(3):
            data, _ = _exchange(proc.proxy_port, _get("/good"))
            assert [(r.status, r.body) for r in parse_responses(data)] == [(200, b"ok")]
        time.sleep(0.1)
        assert backend.request_counts() == [3]
    finally:
        proc.stop()


BAD_BODIES = [
    pytest.param(
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"t" * 10, "close", id="short-cl-close"
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"t" * 5000, "reset", id="cl-reset"
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        "close",
        id="chunked-close",
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\n" + b"c" * 3000,
        "reset",
        id="chunked-reset",
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
        "keep",
        id="chunked-bad-size",
    ),
    pytest.param(b"HTTP/1.1 200 OK\r\n\r\n" + b"u" * 5000, "reset", id="until-close-reset"),
]


@pytest.mark.parametrize(("reply", "after"), BAD_BODIES)
@pytest.mark.parametrize("version", [b"HTTP/1.1", b"HTTP/1.0"])
def test_backend_bad_body_is_never_a_complete_response(
    raw_backend: Callable[..., RawBackend], tmp_path: Path, reply: bytes, after: str, version: bytes
) -> None:
    backend = raw_backend(reply=reply, after=after)
    proc = _one_backend(backend.url, tmp_path)
    try:
        for _ in range(2):
            data, how = _exchange(proc.proxy_port, _get("/bad-body", version=version))
            assert how in ("eof", "reset"), (how, data)
            responses = parse_responses(data)
            if responses and responses[0].status == 502:
                _json_error(responses[0], {502})  # nothing had reached the client yet
                continue
            assert _is_aborted(data, how), (
                f"a cut-short body passed as complete ({how}): {data[:300]!r}"
            )
        time.sleep(0.1)
        counts = backend.request_counts()
        assert counts and max(counts) == 1, f"a broken connection was used again: {counts}"
        assert proc.running
    finally:
        proc.stop()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_to_another_origin_is_passed_through_not_followed(
    raw_backend: Callable[..., RawBackend], tmp_path: Path, status: int
) -> None:
    other = raw_backend()  # where the redirect points: must see no request
    location = f"http://{LOCALHOST}:{other.port}/elsewhere?x=%2F%20&y={_unique()}"
    body = b"moved"
    reply = b"HTTP/1.1 %d Moved\r\nLocation: %s\r\nContent-Length: %d\r\n\r\n%s" % (
        status,
        location.encode(),
        len(body),
        body,
    )
    backend = raw_backend(reply=reply, after="keep")
    proc = _one_backend(backend.url, tmp_path)
    try:
        for method in (b"GET", b"POST"):
            request = (
                b"%s /go HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbody"
                % method
            )
            data, how = _exchange(proc.proxy_port, request)
            assert how == "eof", (how, data)
            [resp] = parse_responses(data)
            assert resp.status == status
            assert resp.header_all("Location") == [location]
            assert resp.body == body
        time.sleep(0.2)
        assert sum(backend.request_counts()) == 2
        assert other.request_counts() == [], "splitter followed the redirect"
        assert b"/elsewhere" not in other.received()
    finally:
        proc.stop()


# --------------------------------------------------------------------------- faulty network


@pytest.fixture
def fault_proxy() -> Iterator[Callable[[int], FaultProxy]]:
    made: list[FaultProxy] = []

    def make(port: int) -> FaultProxy:
        proxy = FaultProxy(port).start()
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        proxy.stop()


def _via(
    fp: FaultProxy, splitter_factory: Callable[..., SplitterProc], **extra: Any
) -> SplitterProc:
    extra.setdefault("health_check", NO_HEALTH_DOWN)
    return splitter_factory(
        pools_config({"main": f"http://{LOCALHOST}:{fp.port}"}, {"main": 100}, **extra)
    )


def _echo_id(proc: SplitterProc, timeout: float = 10) -> tuple[Response, float]:
    rid = "fp-" + _unique()
    start = time.monotonic()
    data, how = _exchange(proc.proxy_port, _get("/echo-id", rid), timeout)
    elapsed = time.monotonic() - start
    assert how in ("eof", "reset"), (how, data)
    responses = parse_responses(data)
    assert len(responses) == 1, data
    resp = responses[0]
    if resp.status == 200:
        assert resp.body == rid.encode()
    return resp, elapsed


def test_latency_still_works(
    backend_factory: Callable[..., Any],
    splitter_factory: Callable[..., SplitterProc],
    fault_proxy: Any,
) -> None:
    fp = fault_proxy(backend_factory("fault", kind="aio").port)
    proc = _via(fp, splitter_factory, timeouts={"connect": "2s", "read": "5s"})
    assert _echo_id(proc)[0].status == 200  # leaves a kept-alive connection to the proxy
    fp.latency = 0.2  # also applies to that connection
    for _ in range(3):
        resp, elapsed = _echo_id(proc)
        assert resp.status == 200
        assert elapsed >= 0.35, elapsed  # 0.2 s each way


def test_latency_over_read_timeout_is_504(
    backend_factory: Callable[..., Any],
    splitter_factory: Callable[..., SplitterProc],
    fault_proxy: Any,
) -> None:
    fp = fault_proxy(backend_factory("fault", kind="aio").port)
    proc = _via(fp, splitter_factory, timeouts={"connect": "2s", "read": "300ms"})
    assert _echo_id(proc)[0].status == 200
    fp.latency = 1.0
    resp, elapsed = _echo_id(proc)
    _json_error(resp, {504})
    assert 0.25 <= elapsed <= 1.5, elapsed
    fp.latency = 0.0
    assert _echo_id(proc)[0].status == 200


def test_blackhole_is_504_after_read_timeout(
    backend_factory: Callable[..., Any],
    splitter_factory: Callable[..., SplitterProc],
    fault_proxy: Any,
) -> None:
    """The black hole accepts connections, so the connect (500 ms) succeeds and the read
    timeout (1 s) is what ends the request: 504, not 502, and never retried."""
    fp = fault_proxy(backend_factory("fault", kind="aio").port)
    proc = _via(fp, splitter_factory, timeouts={"connect": "500ms", "read": "1s"})
    assert _echo_id(proc)[0].status == 200
    fp.blackhole = True
    accepted = fp.accepted
    for _ in range(2):  # the first on the kept-alive connection, the second on a new one
        resp, elapsed = _echo_id(proc)
        _json_error(resp, {504})
        assert 0.9 <= elapsed <= 2.5, elapsed
    assert fp.accepted - accepted <= 2, "a read timeout was retried"
    fp.blackhole = False
    assert _echo_id(proc)[0].status == 200


def test_refused_backend_connection_is_502(
    backend_factory: Callable[..., Any],
    splitter_factory: Callable[..., SplitterProc],
    fault_proxy: Any,
) -> None:
    fp = fault_proxy(backend_factory("fault", kind="aio").port)
    proc = _via(fp, splitter_factory, timeouts={"connect": "500ms", "read": "2s"})
    fp.refuse = True
    accepted = fp.accepted
    resp, elapsed = _echo_id(proc)
    _json_error(resp, {502})
    assert elapsed < 1.5, elapsed
    assert 1 <= fp.accepted - accepted <= 2, "more than one retry"
    fp.refuse = False
    assert _echo_id(proc)[0].status == 200


STREAM_N, STREAM_SIZE = 50, 4096  # 200 KiB from the Flask backend's /stream


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_reset_in_the_middle_of_a_large_response_aborts_the_stream(
    backend_factory: Callable[..., Any],
    splitter_factory: Callable[..., SplitterProc],
    fault_proxy: Any,
    framing: str,
) -> None:
    # The aio backend has no large response; the Flask one streams /stream.
    fp = fault_proxy(backend_factory("fault").port)
    proc = _via(fp, splitter_factory, timeouts={"connect": "2s", "read": "5s"})
    cl = "1" if framing == "content-length" else "0"
    path = f"/stream?n={STREAM_N}&size={STREAM_SIZE}&cl={cl}"
    fp.reset_after = 60_000
    data, how = _exchange(proc.proxy_port, _get(path), timeout=10)
    assert how in ("eof", "reset"), how
    responses = parse_responses(data)
    if responses and responses[0].status == 502:
        pytest.fail("the reset came after the head: the client should see a 200 cut short")
    assert responses and responses[0].status == 200, data[:300]
    assert _is_aborted(data, how), f"a cut-short response passed as complete ({how})"
    assert len(responses[0].body) < STREAM_N * STREAM_SIZE
    fp.reset_after = None
    data, how = _exchange(proc.proxy_port, _get(path), timeout=10)
    [resp] = parse_responses(data)
    assert resp.status == 200 and resp.complete
    assert hashlib.sha256(resp.body).hexdigest() == stream_sha256(STREAM_N, STREAM_SIZE)


def test_bandwidth_cap_still_delivers_everything(
    backend_factory: Callable[..., Any],
    splitter_factory: Callable[..., SplitterProc],
    fault_proxy: Any,
) -> None:
    fp = fault_proxy(backend_factory("fault").port)
    proc = _via(fp, splitter_factory, timeouts={"connect": "2s", "read": "5s"})
    fp.bandwidth = 50_000
    start = time.monotonic()
    status, _, body = http_request(
        proc.proxy_url + f"/stream?n={STREAM_N}&size={STREAM_SIZE}&cl=1", timeout=30
    )
    elapsed = time.monotonic() - start
    assert status == 200
    assert len(body) == STREAM_N * STREAM_SIZE
    assert hashlib.sha256(body).hexdigest() == stream_sha256(STREAM_N, STREAM_SIZE)
    assert elapsed >= 3.0, f"the cap was not applied: {elapsed:.1f}s"
