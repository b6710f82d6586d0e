"""Shadow copies in the data path (splitter.proxy.shadowing), as playbooks: the real
listener, exchanges, copies and readers, with fake transports, a manual connector and a
manual clock (tests/playbook.py). Every connection splitter asks for, the primary's and
the copies', waits in `pb.waiting` in the order asked: the primary's first."""

from __future__ import annotations

import json
from typing import Any

from tests.playbook import Backend, Playbook

PRIMARY = "http://127.0.0.1:5001"
SHADOW = "http://127.0.0.1:5003"
REFERENCE = "http://127.0.0.1:5002"


def playbook(**shadow: Any) -> Playbook:
    return Playbook(
        pools={
            "blue": {"weight": 100, "backends": [PRIMARY]},
            "green": {"weight": 0, "backends": [REFERENCE]},
            "canary": {"weight": 0, "backends": [SHADOW]},
        },
        shadow={"pool": "canary", "share": 1.0, "ignore_json": ["/t"], **shadow},
        timeouts={"connect": "1s", "read": "2s"},
    )


def answer(price: int, t: int = 0, status: int = 200) -> bytes:
    body = json.dumps({"price": price, "t": t}).encode()
    return (
        b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        % (status, len(body))
    ) + body


def counts(pb: Playbook) -> dict[str, int]:
    pb.run_soon()  # the comparisons the loop would run next
    tally = pb.listener.shadowing.tallies.get("default/canary")
    return {k: v for k, v in tally.counts.items() if v} if tally is not None else {}


def get(pb: Playbook, target: bytes = b"/item/1") -> tuple[Any, Backend, Backend]:
    client = pb.client()
    client.send(b"GET " + target + b" HTTP/1.1\r\nHost: shop\r\n\r\n")
    primary = pb.accept()
    shadow = pb.accept()
    return client, primary, shadow


def test_a_copy_goes_to_the_shadow_marked_and_its_answer_is_compared() -> None:
    pb = playbook()
    client, primary, shadow = get(pb)
    assert primary.request_line() == shadow.request_line() == b"GET /item/1 HTTP/1.1"
    assert shadow.header(b"x-splitter-shadow") == [b"1"]
    assert primary.header(b"x-splitter-shadow") == []
    assert shadow.header(b"x-request-id") == primary.header(b"x-request-id")
    primary.reply(answer(10, t=1))
    [response] = client.responses()
    assert json.loads(response.body)["price"] == 10
    assert counts(pb) == {}  # the copy has not answered: nothing counted yet
    shadow.reply(answer(11, t=2))
    assert counts(pb) == {"differ": 1, "pairs": 1}
    # The copy's connection goes back to the copies' own pool, never the primary's.
    assert shadow.idle and pb.listener.shadowing.pools[SHADOW].idle
    assert SHADOW not in pb.listener.pools or not pb.listener.pools[SHADOW].idle
    assert not pb.listener.shadowing.in_flight


def test_the_comparison_waits_for_the_loops_next_turn() -> None:
    # The primary's end is told before its last bytes are written to the client: the
    # comparison must not run in between.
    pb = playbook()
    client, primary, shadow = get(pb)
    shadow.reply(answer(11))
    primary.reply(answer(10))
    assert client.responses()[0].status == 200  # written...
    tally = pb.listener.shadowing.tallies.get("default/canary")
    assert tally is None or tally.compared == 0  # ... and not compared yet
    assert len(pb.loop.soon) == 1
    assert counts(pb) == {"differ": 1, "pairs": 1}


def test_the_shadow_may_answer_before_the_primary() -> None:
    pb = playbook()
    _client, primary, shadow = get(pb)
    shadow.reply(answer(10, t=5))
    assert counts(pb) == {}
    primary.reply(answer(10, t=6))
    assert counts(pb) == {"same": 1, "pairs": 1}


def test_a_failing_primary_is_a_bad_pair_not_a_comparison() -> None:
    pb = playbook()
    client = pb.client()
    client.send(b"GET /item/1 HTTP/1.1\r\nHost: shop\r\n\r\n")
    pb.refuse()  # the primary's connection, then its retry: 502
    shadow = pb.accept()
    pb.refuse()
    [response] = client.responses()
    assert response.status == 502
    shadow.reply(answer(10))
    assert counts(pb) == {"skipped": 1, "pairs": 1, "primary_bad": 1}


def test_a_client_that_leaves_says_nothing_of_either_side() -> None:
    pb = playbook()
    client, _primary, shadow = get(pb)
    client.gone()
    shadow.reply(answer(10))
    assert counts(pb) == {"skipped": 1}


def test_a_shadow_that_cannot_be_reached_is_an_error_and_a_bad_pair() -> None:
    pb = playbook()
    client = pb.client()
    client.send(b"GET /item/1 HTTP/1.1\r\nHost: shop\r\n\r\n")
    primary = pb.accept()
    pb.refuse()  # the copy's connection
    primary.reply(answer(10))
    assert client.responses()[0].status == 200
    assert counts(pb) == {"errors": 1, "pairs": 1, "shadow_bad": 1}
    # Nothing of it reached the primary's side: no upstream error counted, no ejection.
    assert not pb.counters.snapshot().get("upstream_errors")


def test_a_hanging_shadow_times_out_without_touching_the_client() -> None:
    pb = playbook()
    client, primary, shadow = get(pb)
    primary.reply(answer(10))
    assert client.responses()[0].status == 200
    client.send(b"GET /item/2 HTTP/1.1\r\nHost: shop\r\n\r\n")  # the next is not held up
    assert pb.listener.shadowing.in_flight == {"default": 2}  # its copy waits to connect
    primary.reply(answer(10))
    assert [r.status for r in client.responses()] == [200, 200]
    pb.advance(2.6)  # past the connect (1 s) and read (2 s) timeouts
    assert shadow.closed
    assert counts(pb) == {"errors": 2, "pairs": 2, "shadow_bad": 2}
    assert not pb.listener.shadowing.in_flight and not pb.listener.shadowing.legs
    assert not primary.closed  # the primary's connection never noticed


def test_a_stale_kept_alive_shadow_connection_is_tried_once_more() -> None:
    pb = playbook()
    client, primary, shadow = get(pb)
    primary.reply(answer(10))
    shadow.reply(answer(10))
    assert shadow.idle
    client.send(b"GET /item/2 HTTP/1.1\r\nHost: shop\r\n\r\n")  # both reuse their connection
    assert not pb.waiting
    shadow.lost(None)  # the backend had closed it: no answer came
    fresh = pb.accept()  # the copy goes again, on a new connection
    assert fresh.request_line() == b"GET /item/2 HTTP/1.1"
    primary.reply(answer(10))
    fresh.reply(answer(10))
    assert counts(pb) == {"same": 2, "pairs": 2}


def test_a_request_body_over_max_body_is_not_copied() -> None:
    pb = playbook(methods=["POST"], max_body=10)
    client = pb.client()
    client.send(b"POST /item HTTP/1.1\r\nHost: shop\r\nContent-Length: 20\r\n\r\n" + b"x" * 20)
    primary = pb.accept()
    assert not pb.waiting  # no copy asked for a connection
    primary.reply(answer(10))
    assert client.responses()[0].status == 200
    assert counts(pb) == {"skipped": 1}
    assert primary.body() == b"x" * 20


def test_a_body_is_copied_whole_as_it_came_and_chunked_bodies_stay_chunked() -> None:
    pb = playbook(methods=["POST"])
    client = pb.client()
    client.send(b"POST /item HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: chunked\r\n\r\n")
    primary = pb.accept()
    client.send(b"5\r\nhello\r\n")
    assert not pb.waiting  # the copy waits for the whole body
    client.send(b"6\r\n world\r\n0\r\n\r\n")
    shadow = pb.accept()
    assert shadow.body() == primary.body() == b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    assert shadow.header(b"transfer-encoding") == [b"chunked"]
    primary.reply(answer(1))
    shadow.reply(answer(1))
    assert counts(pb) == {"same": 1, "pairs": 1}


def test_a_body_read_before_the_requests_turn_is_copied_too() -> None:
    pb = playbook(methods=["GET", "POST"])
    client = pb.client()
    # Two pipelined requests: the second one's body arrives while the first is served.
    client.send(
        b"GET /item/1 HTTP/1.1\r\nHost: shop\r\n\r\n"
        b"POST /item/2 HTTP/1.1\r\nHost: shop\r\nContent-Length: 4\r\n\r\nbody"
    )
    primary = pb.accept()
    shadow = pb.accept()
    shadow.take()
    shadow.received.clear()
    shadow.reply(answer(1))
    primary.reply(answer(1))  # the second request starts: its copy reuses the idle one
    assert shadow.request_line() == b"POST /item/2 HTTP/1.1"
    assert shadow.body() == b"body"


def test_answers_over_max_body_are_counted_not_compared() -> None:
    pb = playbook(max_body=16)
    client, primary, shadow = get(pb)
    big = b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n" + b"y" * 40
    primary.reply(big)
    assert client.responses()[0].body == b"y" * 40  # the client gets all of it
    shadow.reply(answer(10))
    assert counts(pb) == {"skipped": 1, "pairs": 1}
    # A shadow's answer over max_body: its connection is closed, not read to its end.
    client.send(b"GET /item/2 HTTP/1.1\r\nHost: shop\r\n\r\n")
    primary.reply(answer(1))
    shadow.reply(b"HTTP/1.1 200 OK\r\nContent-Length: 4000\r\n\r\n" + b"z" * 100)
    assert shadow.closed
    assert counts(pb) == {"skipped": 2, "pairs": 2}


def test_the_reference_gets_a_copy_and_its_differences_are_noise() -> None:
    pb = playbook(reference="green", ignore_json=[])
    _client, primary, shadow = get(pb)
    reference = pb.accept()
    assert reference.header(b"x-splitter-shadow") == [b"1"]
    primary.reply(answer(10, t=1))
    shadow.reply(answer(10, t=2))
    reference.reply(answer(10, t=3))  # t differs between two copies of one version: noise
    assert counts(pb) == {"noise": 1, "pairs": 1}


def test_requests_the_override_header_sent_are_not_copied() -> None:
    pb = playbook()
    client = pb.client()
    client.send(b"GET / HTTP/1.1\r\nHost: shop\r\nX-Splitter-Pool: green\r\n\r\n")
    pb.accept()
    assert not pb.waiting
    assert counts(pb) == {}
