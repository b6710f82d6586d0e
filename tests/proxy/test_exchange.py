"""The data path in-process: bytes in from a client, what a backend receives, bytes back,
what the client sees (tests/playbook.py). No sockets, no event loop; the clock is moved by
the test. Every state of an exchange and of a client connection, its deadlines and limits.
"""

from __future__ import annotations

import json

import pytest

from splitter.proxy.downstream import HOLD_LIMIT
from splitter.proxy.exchange import DONE, FAILED
from tests.hostile_requests import CORPUS, Hostile
from tests.playbook import Backend, Client, Playbook

GET = b"GET /a?b=%2F HTTP/1.1\r\nHost: app.test\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def served(pb: Playbook, client: Client, request: bytes = GET, reply: bytes = OK) -> Backend:
    """Send `request`, accept the connection (or reuse the idle one), answer `reply`."""
    client.send(request)
    backend = pb.accept() if pb.waiting else next(b for b in pb.opened if not b.closed)
    backend.reply(reply)
    return backend


# -- the straight line ----------------------------------------------------------------------


def test_get_is_forwarded_and_answered_and_its_connection_kept() -> None:
    pb = Playbook()
    client = pb.client(peer="10.1.2.3")
    client.send(GET)
    assert len(pb.waiting) == 1
    backend = pb.accept()
    assert backend.request_line() == b"GET /a?b=%2F HTTP/1.1"
    assert backend.header(b"host") == [b"app.test"]
    assert backend.header(b"x-forwarded-for") == [b"10.1.2.3"]
    assert backend.header(b"x-forwarded-host") == [b"app.test"]
    assert backend.header(b"x-forwarded-proto") == [b"http"]
    [request_id] = backend.header(b"x-request-id")
    backend.reply(OK)
    [response] = client.responses()
    assert (response.status, response.body) == (200, b"ok")
    assert response.header("X-Request-Id") == request_id.decode()
    assert backend.idle and not client.closed
    [ex] = pb.observed
    assert (ex.state, ex.status, ex.pool_name, ex.backend_url, ex.body_bytes) == (
        DONE, 200, "blue", "http://127.0.0.1:5001", 2
    )  # fmt: skip


def test_a_kept_alive_connection_is_reused_for_the_next_request() -> None:
    pb = Playbook()
    client = pb.client()
    first = served(pb, client)
    client.send(GET)
    assert not pb.waiting  # no new connection asked for
    first.take()
    first.reply(OK)
    assert [r.status for r in client.responses()] == [200, 200]
    assert len(pb.opened) == 1


def test_pipelined_requests_are_answered_in_order_one_at_a_time() -> None:
    pb = Playbook()
    client = pb.client()
    client.send(GET.replace(b"/a", b"/one") + GET.replace(b"/a", b"/two"))
    backend = pb.accept()
    assert backend.request_line() == b"GET /one?b=%2F HTTP/1.1"
    assert b"/two" not in backend.received  # the second waits for the first's answer
    backend.reply(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none")
    assert b"GET /two" in backend.take()
    backend.reply(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo")
    assert [r.body for r in client.responses()] == [b"one", b"two"]


def test_body_sent_before_the_connection_is_up_is_held_then_forwarded() -> None:
    pb = Playbook()
    client = pb.client()
    client.send(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n01234")
    client.send(b"56789")
    backend = pb.accept()
    assert backend.header(b"content-length") == [b"10"]
    assert backend.body() == b"0123456789"
    backend.reply(OK)
    assert client.responses()[0].status == 200


def test_chunked_request_body_is_rechunked_and_its_trailers_dropped() -> None:
    pb = Playbook()
    client = pb.client()
    client.send(
        b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nX-Keep: yes\r\n\r\n"
        b"3\r\nabc\r\n0\r\nX-Splitter-Pool: green\r\nAuthorization: secret\r\n"
        b"Connection: X-Keep\r\n\r\n"
    )
    backend = pb.accept()
    assert pb.observed == [] and backend.conn.pool.url.endswith(":5001")  # blue, not green
    head = backend.request_head()
    assert b"Authorization" not in head and b"secret" not in backend.received
    assert backend.header(b"x-keep") == [b"yes"]  # a trailer's Connection changes nothing
    assert backend.header(b"transfer-encoding") == [b"chunked"]
    assert backend.body() == b"3\r\nabc\r\n0\r\n\r\n"


def test_trailers_count_against_the_header_limits() -> None:
    pb = Playbook(limits={"max_header_count": 5})
    client = pb.client()
    trailers = b"".join(b"T%d: x\r\n" % i for i in range(6))
    client.send(b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n")
    backend = pb.accept()
    client.send(b"0\r\n" + trailers + b"\r\n")
    assert not backend.body().endswith(b"0\r\n\r\n")  # the body never completes at the backend
    assert backend.closed
    [response] = client.responses()
    assert response.status == 431 and client.closed


def test_expect_100_continue_is_answered_by_splitter() -> None:
    pb = Playbook()
    client = pb.client()
    client.send(b"PUT /e HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
    backend = pb.accept()
    assert client.take() == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert b"expect" not in backend.request_head().lower()
    client.send(b"hi")
    assert backend.body() == b"hi"


# -- routing ------------------------------------------------------------------------------


def test_override_header_reaches_a_pool_at_weight_zero_without_a_cookie() -> None:
    pb = Playbook(sticky={"cookie": "splitter"})
    client = pb.client()
    backend = served(pb, client, b"GET / HTTP/1.1\r\nHost: a\r\nX-Splitter-Pool: green\r\n\r\n")
    assert backend.conn.pool.url == "http://127.0.0.1:5002"
    [response] = client.responses()
    assert response.header("Set-Cookie") is None
    assert pb.observed[0].by_override and pb.observed[0].pool_name == "green"


def test_a_new_client_gets_a_cookie_and_keeps_its_pool_with_it() -> None:
    pb = Playbook(sticky={"cookie": "splitter"})
    client = pb.client()
    served(pb, client)
    [response] = client.responses()
    cookie = response.header("Set-Cookie")
    assert cookie is not None and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    value = cookie.split(";", 1)[0]
    assert pb.observed[0].assigned
    again = pb.client()
    again.send(b"GET / HTTP/1.1\r\nHost: a\r\nCookie: " + value.encode() + b"\r\n\r\n")
    pb.opened[0].reply(OK)
    [second] = again.responses()
    assert second.header("Set-Cookie") is None
    assert pb.observed[1].client_id == pb.observed[0].client_id
    assert not pb.observed[1].assigned


@pytest.mark.parametrize(
    ("sent", "forwarded"),
    [
        ([b"a=1; splitter_admin=s3ss10n; b=2"], [b"a=1; b=2"]),
        ([b"splitter_admin=s3ss10n"], []),
        ([b"splitter_admin=s3ss10n;b=2"], [b"b=2"]),
        ([b"a=1", b"splitter_admin=x; splitter_admin=y"], [b"a=1"]),
        ([b"a=1;  splitter_admin=x;b=%20"], [b"a=1;b=%20"]),
        ([b"a=splitter_admin; xsplitter_admin=1"], [b"a=splitter_admin; xsplitter_admin=1"]),
    ],
)
def test_the_admin_session_cookie_never_reaches_a_backend(
    sent: list[bytes], forwarded: list[bytes]
) -> None:
    """Browsers scope cookies by host, not port: a backend on the admin listener's host
    must never get `splitter_admin` (docs/admin-api.md); every other cookie passes as it came."""
    pb = Playbook(sticky={"cookie": "splitter"})
    first = pb.client()
    served(pb, first)
    [response] = first.responses()
    sticky = (response.header("Set-Cookie") or "").split(";", 1)[0].encode()
    backend = pb.opened[0]
    backend.take()
    backend.received.clear()  # the next request reuses this connection
    client = pb.client()
    lines = b"".join(b"Cookie: " + value + b"\r\n" for value in sent)
    client.send(b"GET / HTTP/1.1\r\nHost: a\r\n" + lines + b"Cookie: " + sticky + b"\r\n\r\n")
    assert backend.header(b"cookie") == [*forwarded, sticky]
    assert b"splitter_admin=" not in backend.request_head().replace(b"xsplitter_admin", b"")
    backend.reply(OK)
    assert pb.observed[1].client_id == pb.observed[0].client_id  # the sticky one still counts


def test_no_live_backend_is_a_503_and_the_connection_stays_usable() -> None:
    pb = Playbook()
    for health in pb.health.by_url.values():
        health.checked_up = False
        health.update(0)
    pb.listener.live.refresh_health()
    client = pb.client()
    client.send(GET)
    assert not pb.waiting
    [response] = client.responses()
    assert response.status == 503 and not client.closed
    assert json.loads(response.body)["error"] == "no healthy backend"


# -- request rules ------------------------------------------------------------------------


def test_absolute_form_goes_in_origin_form_with_the_target_authority_as_host() -> None:
    pb = Playbook()
    client = pb.client()
    client.send(b"GET http://real.test:8080/p/q?x=%2F HTTP/1.1\r\nHost: other.test\r\n\r\n")
    backend = pb.accept()
    assert backend.request_line() == b"GET /p/q?x=%2F HTTP/1.1"
    assert backend.header(b"host") == [b"real.test:8080"]
    assert backend.header(b"x-forwarded-host") == [b"real.test:8080"]


@pytest.mark.parametrize(
    "target",
    [b"http://user@real.test/", b"ftp://real.test/", b"http:///p", b"https://u:p@h/"],
)
def test_absolute_form_with_userinfo_or_another_scheme_is_400(target: bytes) -> None:
    pb = Playbook()
    client = pb.client()
    client.send(b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    assert not pb.waiting
    [response] = client.responses()
    assert response.status == 400 and client.closed


def test_http10_without_host_gets_the_backend_address_as_host() -> None:
    pb = Playbook()
    client = pb.client()
    client.send(b"GET / HTTP/1.0\r\n\r\n")
    backend = pb.accept()
    assert backend.header(b"host") == [b"127.0.0.1:5001"]
    assert backend.header(b"x-forwarded-host") == []


@pytest.mark.parametrize("length", [b"18446744073709551615", b"9223372036854775808"])
def test_content_length_above_2_63_minus_1_is_400(length: bytes) -> None:
    pb = Playbook()
    client = pb.client()
    client.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: " + length + b"\r\n\r\n")
    assert not pb.waiting
    assert client.responses()[0].status == 400


def test_content_length_of_2_63_minus_1_is_accepted() -> None:
    pb = Playbook()
    client = pb.client()
    client.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n\r\nx")
    backend = pb.accept()
    assert backend.header(b"content-length") == [b"9223372036854775807"]


@pytest.mark.parametrize("case", CORPUS, ids=lambda c: c.name)
def test_hostile_request_is_refused_and_never_forwarded(case: Hostile) -> None:
    pb = Playbook()
    client = pb.client()
    client.send(case.data)
    assert not pb.waiting, "a backend was asked for"
    responses = client.responses()
    assert responses and responses[0].status in case.statuses, responses
    assert case.marker not in bytes(client.received)
    assert client.closed
    # a well-formed request right after, on a new connection, is served as usual
    ok = pb.client()
    served(pb, ok)
    assert [r.status for r in ok.responses()] == [200]


# -- retries and failures -----------------------------------------------------------------


def test_connect_refused_is_retried_once_then_502() -> None:
    pb = Playbook()
    client = pb.client()
    client.send(GET)
    pb.refuse()
    assert len(pb.waiting) == 1  # the same backend again, on a fresh connection
    pb.refuse()
    assert not pb.waiting
    [response] = client.responses()
    assert response.status == 502 and json.loads(response.body)["reason"] == "connect"
    assert pb.counters.upstream_errors[("default", "blue", "connect")] == 2


def test_connect_refused_then_accepted_is_served() -> None:
    pb = Playbook()
    client = pb.client()
    client.send(b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
    pb.refuse()
    backend = pb.accept()
    assert backend.body() == b"abc"
    backend.reply(OK)
    assert client.responses()[0].status == 200


def test_kept_alive_connection_lost_before_the_answer_is_retried_for_get() -> None:
    pb = Playbook()
    client = pb.client()
    first = served(pb, client)
    client.send(GET)
    first.lost()  # closed by the backend as it was reused
    second = pb.accept()
    second.reply(OK)
    assert [r.status for r in client.responses()] == [200, 200]


def test_post_is_never_sent_twice() -> None:
    pb = Playbook()
    client = pb.client()
    first = served(pb, client)
    client.send(b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx")
    first.lost(ConnectionResetError())
    assert not pb.waiting
    assert [r.status for r in client.responses()] == [200, 502]


def test_large_body_already_forwarded_is_not_retried() -> None:
    pb = Playbook()
    client = pb.client()
    client.send(b"PUT /p HTTP/1.1\r\nHost: a\r\nContent-Length: 70000\r\n\r\n")
    backend = pb.accept()
    client.send(b"x" * 70000)
    backend.lost(ConnectionResetError())
    assert not pb.waiting  # 70,000 bytes sent and not kept: cannot be sent again
    assert client.responses()[0].status == 502


def test_small_body_is_retained_and_sent_again() -> None:
    pb = Playbook()
    client = pb.client()
    client.send(b"PUT /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n")
    backend = pb.accept()
    client.send(b"hello")
    backend.lost()
    second = pb.accept()
    assert second.body() == b"hello"


def test_read_timeout_is_504_and_never_retried() -> None:
    pb = Playbook(timeouts={"read": "5s"})
    client = pb.client()
    client.send(GET)
    backend = pb.accept()
    pb.advance(4)
    assert not client.take()
    pb.advance(2)
    assert not pb.waiting and backend.closed
    [response] = client.responses()
    assert response.status == 504


def test_connect_timeout_is_retried_then_502() -> None:
    pb = Playbook(timeouts={"connect": "1s"})
    client = pb.client()
    client.send(GET)
    pb.advance(1.2)
    assert len(pb.waiting) == 2  # the first was given up, a second asked for
    pb.advance(1.2)
    assert client.responses()[0].status == 502


def test_response_cut_mid_body_resets_the_client() -> None:
    pb = Playbook()
    client = pb.client()
    client.send(GET)
    backend = pb.accept()
    backend.reply(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
    backend.lost(ConnectionResetError())
    assert client.aborted
    assert pb.observed[0].state == FAILED


def test_close_delimited_body_ends_at_a_clean_close_only() -> None:
    pb = Playbook()
    client = pb.client()
    client.send(GET)
    backend = pb.accept()
    backend.reply(b"HTTP/1.1 200 OK\r\n\r\nuntil close")
    backend.eof()
    [response] = client.responses()
    assert response.chunked and response.body == b"until close" and response.complete
    cut = pb.client()
    cut.send(GET)
    other = pb.accept()
    other.reply(b"HTTP/1.1 200 OK\r\n\r\nuntil close")
    other.lost(ConnectionResetError())
    assert cut.aborted


def test_chunked_response_to_an_http10_client_is_close_delimited() -> None:
    pb = Playbook()
    client = pb.client()
    client.send(b"GET / HTTP/1.0\r\n\r\n")
    backend = pb.accept()
    backend.reply(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    data = client.take()
    assert data.endswith(b"\r\n\r\nabc") and b"chunked" not in data.lower()
    assert client.closed


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
        b"\x16\x03\x01\x02\x00",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: ws\r\n\r\n",
    ],
    ids=["two-lengths", "space-in-name", "obs-fold", "binary", "bad-status", "101-unasked"],
)
def test_invalid_response_head_is_502_and_the_connection_discarded(reply: bytes) -> None:
    pb = Playbook()
    client = pb.client()
    client.send(GET)
    backend = pb.accept()
    backend.reply(reply)
    [response] = client.responses()
    assert response.status == 502 and backend.closed and not backend.idle


def test_response_head_over_the_field_limits_is_502() -> None:
    pb = Playbook(limits={"max_header_count": 20, "max_header_bytes": 4096})
    within = b"".join(b"Set-Cookie: c%d=v\r\n" % i for i in range(19))
    client = pb.client()
    served(pb, client, reply=b"HTTP/1.1 200 OK\r\n" + within + b"Content-Length: 0\r\n\r\n")
    assert client.responses()[0].status == 200
    for head in (
        b"".join(b"Set-Cookie: c%d=v\r\n" % i for i in range(21)),
        b"X-Big: " + b"v" * 5000 + b"\r\n",
    ):
        other = pb.client()
        other.send(GET)
        backend = pb.accept() if pb.waiting else pb.opened[0]
        backend.reply(b"HTTP/1.1 200 OK\r\n" + head + b"\r\n")
        assert other.responses()[0].status == 502
    endless = pb.client()
    endless.send(GET)
    backend = pb.accept()
    backend.reply(b"HTTP/1.1 200 OK\r\nX-Endless: ")
    for _ in range(20):
        if endless.take():
            break
        backend.reply(b"v" * 1000)
    assert endless.responses()[0].status == 502


@pytest.mark.parametrize(
    ("request_", "reply"),
    [
        (GET, OK + b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEVIL!"),
        (GET, b"HTTP/1.1 204 No Content\r\n\r\nEVIL!"),
        (GET, b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\nEVIL!"),
        (b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n", OK.replace(b"2\r\n\r\nok", b"5\r\n\r\nEVIL!")),
        (GET, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\nEVIL!"),
    ],
    ids=["after-length", "after-204", "after-304", "after-head", "after-last-chunk"],
)
def test_excess_after_the_framing_is_dropped_and_the_connection_discarded(
    request_: bytes, reply: bytes
) -> None:
    pb = Playbook()
    client = pb.client()
    client.send(request_ + GET)  # a pipelined request right behind
    first = pb.accept()
    first.reply(reply)
    assert first.closed and not first.idle
    second = pb.accept()  # the next request gets a fresh connection
    second.reply(OK)
    assert b"EVIL" not in bytes(client.received) + client.take()
    data = bytes(client.received)
    assert data.count(b"HTTP/1.1 ") == 2 and data.endswith(b"\r\n\r\nok")


def test_excess_arriving_after_release_closes_the_idle_connection() -> None:
    pb = Playbook()
    client = pb.client()
    backend = served(pb, client)
    assert backend.idle
    backend.reply(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEVIL!")
    assert backend.closed and not backend.idle
    client.send(GET)
    assert len(pb.waiting) == 1  # a new connection, never the one that misbehaved


def test_interim_responses_are_skipped() -> None:
    pb = Playbook()
    client = pb.client()
    served(pb, client, reply=b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + OK)
    [response] = client.responses()
    assert response.status == 200


# -- upgrades and tunnels -----------------------------------------------------------------


UPGRADE = b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"


def test_upgrade_becomes_a_tunnel_after_101() -> None:
    pb = Playbook()
    client = pb.client()
    client.send(UPGRADE + b"early")
    backend = pb.accept()
    assert backend.header(b"upgrade") == [b"websocket"]
    assert b"early" not in backend.received
    backend.reply(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\nhello")
    assert backend.take().endswith(b"early")  # held bytes go out after the 101
    data = client.take()
    assert data.startswith(b"HTTP/1.1 101") and data.endswith(b"hello")
    client.send(b"ping")
    assert backend.take() == b"ping"
    backend.reply(b"pong")
    assert client.take() == b"pong"
    backend.lost()
    assert client.closed
    assert pb.observed[0].status == 101


def test_a_half_close_before_the_101_is_passed_on_after_it() -> None:
    pb = Playbook()
    client = pb.client()
    client.send(UPGRADE + b"early")
    backend = pb.accept()
    client.eof()
    assert not backend.transport.eof_written and not client.closed
    backend.reply(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n")
    assert backend.take().endswith(b"early") and backend.transport.eof_written


def test_upgrade_holds_at_most_the_hold_limit_before_its_101() -> None:
    pb = Playbook()
    client = pb.client()
    client.send(UPGRADE)
    backend = pb.accept()
    sent = 0
    while client.reading and sent < 10 * HOLD_LIMIT:
        chunk = b"x" * min(4096, HOLD_LIMIT - client.conn.held_bytes)
        client.send(chunk)
        sent += len(chunk)
    assert client.conn.held_bytes <= HOLD_LIMIT and not client.reading
    backend.reply(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n")
    assert backend.body() == b"x" * sent
    assert client.reading


def test_upgrade_with_more_than_the_hold_limit_behind_its_head_is_400() -> None:
    pb = Playbook()
    client = pb.client()
    client.send(UPGRADE + b"x" * (HOLD_LIMIT + 1))
    assert not pb.waiting
    assert client.responses()[0].status == 400


def test_upgrade_answered_without_101_closes_after_the_response() -> None:
    pb = Playbook()
    client = pb.client()
    client.send(UPGRADE)
    backend = pb.accept()
    backend.reply(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\n\r\nno")
    assert client.responses()[0].status == 400 and client.closed


# -- deadlines in every state -------------------------------------------------------------


def test_partial_head_after_a_complete_request_times_out() -> None:
    pb = Playbook(limits={"header_timeout": "2s"})
    client = pb.client()
    served(pb, client, request=GET + b"G")
    assert client.responses()[0].status == 200
    pb.advance(1.5)
    assert not client.closed
    pb.advance(1)
    responses = client.responses()
    assert [r.status for r in responses] == [200, 408] and client.closed


def test_pipelined_head_timing_out_behind_a_streaming_response_waits_for_it() -> None:
    pb = Playbook(limits={"header_timeout": "2s"}, timeouts={"read": "60s"})
    client = pb.client()
    client.send(GET + b"GET /slow")
    backend = pb.accept()
    backend.reply(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nabc")
    pb.advance(3)  # the second head's deadline passes while the first streams
    assert not client.reading and not client.closed
    backend.reply(b"def")
    responses = client.responses()
    assert [(r.status, r.body) for r in responses] == [(200, b"abcdef"), (408, responses[1].body)]
    assert client.closed


def test_head_deadline_counts_from_the_first_byte_not_each_byte() -> None:
    pb = Playbook(limits={"header_timeout": "2s"})
    client = pb.client()
    served(pb, client)
    for byte in b"GET / HT":
        client.send(bytes([byte]))
        pb.advance(0.3)
    assert client.closed and client.responses()[-1].status == 408


def test_silent_connection_gets_408_from_accept() -> None:
    pb = Playbook(limits={"header_timeout": "2s"})
    client = pb.client()
    pb.advance(2.5)
    assert client.closed and client.responses()[0].status == 408


def test_a_client_half_closed_in_the_middle_of_a_body_gets_400_at_once() -> None:
    pb = Playbook(limits={"body_idle_timeout": "30s"})
    client = pb.client()
    client.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
    backend = pb.accept()
    client.eof()  # the rest can never come
    assert backend.closed
    assert client.responses()[0].status == 400 and client.closed


def test_body_idle_is_408_and_the_upstream_request_aborted() -> None:
    pb = Playbook(limits={"body_idle_timeout": "2s"})
    client = pb.client()
    client.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
    backend = pb.accept()
    pb.advance(1.5)
    client.send(b"de")  # each byte starts the gap again
    pb.advance(1.5)
    assert not client.closed
    pb.advance(1)
    assert backend.closed and client.closed
    assert client.responses()[0].status == 408


def test_idle_keepalive_connection_closes_silently() -> None:
    pb = Playbook(limits={"keepalive_timeout": "3s"})
    client = pb.client()
    served(pb, client)
    client.take()
    pb.advance(3.5)
    assert client.closed and not client.take()


def test_a_client_that_reads_nothing_is_cut_after_the_read_timeout() -> None:
    pb = Playbook(timeouts={"read": "5s"})
    client = pb.client()
    client.send(GET)
    backend = pb.accept()
    backend.reply(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
    client.conn.pause_writing()  # its socket is full
    assert not backend.transport.reading  # the backend is not read faster than the client
    pb.advance(4)
    assert not client.closed  # a slow reader is not a slow backend: no 504
    pb.advance(2)
    assert client.aborted


def test_client_leaving_mid_response_is_499_and_aborts_the_backend() -> None:
    pb = Playbook()
    client = pb.client()
    client.send(GET)
    backend = pb.accept()
    client.gone()
    assert backend.closed
    assert pb.observed[0].status == 499


def test_every_exchange_is_observed_once() -> None:
    pb = Playbook()
    client = pb.client()
    client.send(GET + GET + b"BAD REQUEST\r\n\r\n")
    backend = pb.accept()
    backend.reply(OK)
    backend.take()
    backend.reply(OK)
    statuses = [ex.status for ex in pb.observed]
    assert statuses == [200, 200, 400]
    assert pb.counters.requests == {("default", "blue", 200): 2, ("none", "none", 400): 1}
    drained = pb.recorder.drain()
    [pools] = drained.values()
    assert pools["default/blue"][0][0] == 2 and pools["none"][0][0] == 1


def test_at_most_upstream_max_idle_connections_are_kept_per_backend() -> None:
    pb = Playbook(limits={"upstream_max_idle": 2})
    clients = [pb.client() for _ in range(3)]
    for client in clients:
        client.send(GET)
    backends = [pb.accept() for _ in clients]
    for backend in backends:
        backend.reply(OK)
    assert [b.idle for b in backends] == [False, True, True]  # the oldest went
    assert backends[0].closed
    assert len(pb.pool().idle) == 2
