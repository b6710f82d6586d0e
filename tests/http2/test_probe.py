"""The gRPC health probe of an h2c backend: against real grpcio servers over loopback
sockets (grpcio's own health service), an HTTP/1.1-only aiohttp server, a closed port and
a server that never answers; and `HealthCall` as bytes in and out against h2's server
side, for the answers no well-behaved server gives (resets, floods, oversized bodies)."""

from __future__ import annotations

import asyncio
import importlib
import socket
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import pytest
from aiohttp import web
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import ConnectionTerminated, Event, RequestReceived, StreamEnded

from splitter.http2.grpc import HEALTH_PATH, MAX_HEALTH_MESSAGE
from splitter.http2.probe import MAX_ANSWER, HealthCall, probe_grpc

grpc: Any = importlib.import_module("grpc")
health: Any = importlib.import_module("grpc_health.v1.health")
health_pb2: Any = importlib.import_module("grpc_health.v1.health_pb2")
health_pb2_grpc: Any = importlib.import_module("grpc_health.v1.health_pb2_grpc")

Status = health_pb2.HealthCheckResponse
WHAT = "grpc.health.v1.Health/Check"


def grpc_server(servicer: Any | None) -> tuple[Any, int]:
    """A real grpcio server on 127.0.0.1 with `servicer` as its Health service (None: no
    health service at all)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    if servicer is not None:
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


@pytest.fixture
def health_server() -> Iterator[tuple[int, Any]]:
    servicer = health.HealthServicer()
    server, port = grpc_server(servicer)
    try:
        yield port, servicer
    finally:
        server.stop(None)


def probe(port: int, timeout: float = 2.0) -> tuple[bool, str]:
    return asyncio.run(probe_grpc("127.0.0.1", port, timeout))


# --------------------------------------------------------------------------- real servers


@pytest.mark.parametrize(
    ("status", "ok", "name"),
    [
        (Status.SERVING, True, "SERVING"),
        (Status.NOT_SERVING, False, "NOT_SERVING"),
        (Status.UNKNOWN, False, "UNKNOWN"),
        (Status.SERVICE_UNKNOWN, False, "SERVICE_UNKNOWN"),
    ],
)
def test_serving_is_up_and_any_other_status_down(
    health_server: tuple[int, Any], status: int, ok: bool, name: str
) -> None:
    port, servicer = health_server
    servicer.set("", status)
    assert probe(port) == (ok, f"{WHAT} answered {name}")


def test_a_flip_to_not_serving_is_seen_by_the_next_probe(health_server: tuple[int, Any]) -> None:
    port, servicer = health_server
    assert probe(port) == (True, f"{WHAT} answered SERVING")  # grpcio's default for ""
    servicer.set("", Status.NOT_SERVING)
    assert probe(port) == (False, f"{WHAT} answered NOT_SERVING")
    servicer.set("", Status.SERVING)
    assert probe(port)[0]


class NamedServicesOnly(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
    """A health service that knows its named services but not the server as a whole
    (the service ""): grpcio answers NOT_FOUND for it, as the protocol says."""

    def Check(self, request: Any, context: Any) -> Any:
        if request.service == "shop.Cart":
            return Status(status=Status.SERVING)
        context.set_code(grpc.StatusCode.NOT_FOUND)
        return Status()


def test_a_service_unknown_to_the_health_service_is_down() -> None:
    server, port = grpc_server(NamedServicesOnly())
    try:
        assert probe(port) == (False, f"{WHAT} answered NOT_FOUND (5)")
    finally:
        server.stop(None)


def test_a_grpc_server_without_the_health_service_is_down_with_why() -> None:
    server, port = grpc_server(None)
    try:
        assert probe(port) == (
            False,
            f"{WHAT} answered UNIMPLEMENTED (12): the backend does not serve the health "
            "checking protocol",
        )
    finally:
        server.stop(None)


def test_a_closed_port_is_down() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert probe(port) == (False, f"{WHAT}: connection refused")


def test_an_http1_only_server_is_down_and_the_line_names_the_pool_protocol() -> None:
    async def main() -> tuple[bool, str]:
        app = web.Application()

        async def hello(request: web.Request) -> web.Response:
            return web.Response(text="an HTTP/1.1 app")

        app.router.add_get("/", hello)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            return await probe_grpc("127.0.0.1", port, 2.0)
        finally:
            await runner.cleanup()

    ok, what = asyncio.run(main())
    assert not ok
    assert what.startswith(f"{WHAT}: the backend does not speak HTTP/2 (h2c), it answered HTTP/1.")
    assert what.endswith(" 400; set the pool's protocol (http1 for an HTTP/1.1 backend)"), what


def test_a_server_that_never_answers_times_out_and_gets_goaway_then_the_close() -> None:
    """The server takes the request (it reads it with h2's server side) and says nothing;
    the probe gives up at its timeout, and still says goodbye properly."""
    seen: list[Event] = []
    closed = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        h2 = H2Connection(H2Configuration(client_side=False, header_encoding=None))
        while data := await reader.read(65536):
            seen.extend(h2.receive_data(data))
        closed.set()
        writer.close()

    async def main() -> tuple[bool, str]:
        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            result = await probe_grpc("127.0.0.1", port, 0.3)
            await asyncio.wait_for(closed.wait(), 2)
            return result

    assert asyncio.run(main()) == (False, f"{WHAT}: no answer within 0.3s (health_check.timeout)")
    requests = [e for e in seen if isinstance(e, RequestReceived)]
    assert len(requests) == 1
    assert (b":path", HEALTH_PATH) in requests[0].headers
    assert any(isinstance(e, StreamEnded) for e in seen)  # the request was whole
    goaway = [e for e in seen if isinstance(e, ConnectionTerminated)]
    assert len(goaway) == 1 and goaway[0].error_code == ErrorCodes.NO_ERROR
    assert isinstance(seen[-1], ConnectionTerminated)  # the last frame, then the close


# -------------------------------------------------- HealthCall against h2's server side

Respond = Callable[[H2Connection, int], None]


def answer(respond: Respond, chunk: int = 0) -> HealthCall:
    """A HealthCall answered by h2's server side with `respond(server, stream_id)`; the
    server's bytes fed in one piece, or in pieces of `chunk` bytes."""
    call = HealthCall(b"127.0.0.1:50051")
    server = H2Connection(H2Configuration(client_side=False, header_encoding=None))
    server.initiate_connection()
    events = server.receive_data(call.data_to_send())
    stream_id = next(e.stream_id for e in events if isinstance(e, RequestReceived))
    respond(server, stream_id)
    out = server.data_to_send()
    for i in range(0, len(out), chunk or len(out)):
        call.feed(out[i : i + (chunk or len(out))])
        if call.result is not None:
            break
    return call


GRPC_HEADERS = [(b":status", b"200"), (b"content-type", b"application/grpc")]
SERVING = b"\x00\x00\x00\x00\x02\x08\x01"


def serving(server: H2Connection, stream_id: int) -> None:
    server.send_headers(stream_id, GRPC_HEADERS)
    server.send_data(stream_id, SERVING)
    server.send_headers(stream_id, [(b"grpc-status", b"0")], end_stream=True)


def test_a_whole_answer_in_pieces_is_judged_once_it_ends() -> None:
    for chunk in (0, 1, 7):
        call = answer(serving, chunk)
        assert call.result == (True, f"{WHAT} answered SERVING"), chunk
        assert call.data_to_send()[3] == 4  # the SETTINGS frame's acknowledgement
        assert call.goodbye()[3] == 7  # then a GOAWAY frame


def test_a_trailers_only_answer_is_read_from_its_headers() -> None:
    def unavailable(server: H2Connection, stream_id: int) -> None:
        server.send_headers(stream_id, [*GRPC_HEADERS, (b"grpc-status", b"14")], end_stream=True)

    assert answer(unavailable).result == (False, f"{WHAT} answered UNAVAILABLE (14)")


def test_a_body_beyond_one_health_message_fails_before_it_is_all_read() -> None:
    def big(server: H2Connection, stream_id: int) -> None:
        server.send_headers(stream_id, GRPC_HEADERS)
        server.send_data(stream_id, b"\x00" * (MAX_HEALTH_MESSAGE + 6))
        server.send_headers(stream_id, [(b"grpc-status", b"0")], end_stream=True)

    call = answer(big)
    assert call.result == (
        False,
        f"{WHAT}: the answer's body exceeds {MAX_HEALTH_MESSAGE + 5} bytes",
    )


def test_a_flood_of_frames_fails_at_the_bound() -> None:
    def pings(server: H2Connection, stream_id: int) -> None:
        for i in range(MAX_ANSWER // 17 + 1):  # a PING frame is 17 bytes
            server.ping(i.to_bytes(8, "big"))

    call = answer(pings, chunk=1000)
    assert call.result == (False, f"{WHAT}: the answer exceeds {MAX_ANSWER} bytes")
    assert call.received <= MAX_ANSWER + 1000


def test_a_reset_stream_and_a_goaway_are_named() -> None:
    def refuse(server: H2Connection, stream_id: int) -> None:
        server.reset_stream(stream_id, ErrorCodes.REFUSED_STREAM)

    def calm(server: H2Connection, stream_id: int) -> None:
        server.close_connection(ErrorCodes.ENHANCE_YOUR_CALM)

    assert answer(refuse).result == (
        False,
        f"{WHAT}: the backend reset the stream (REFUSED_STREAM)",
    )
    assert answer(calm).result == (
        False,
        f"{WHAT}: the backend ended the connection (GOAWAY ENHANCE_YOUR_CALM)",
    )


def test_a_close_before_the_end_or_before_anything() -> None:
    def headers_only(server: H2Connection, stream_id: int) -> None:
        server.send_headers(stream_id, GRPC_HEADERS)

    call = answer(headers_only)
    assert call.result is None
    call.feed(b"")
    assert call.result == (
        False,
        f"{WHAT}: the backend closed the connection before the answer's end",
    )
    call = HealthCall(b"127.0.0.1:50051")
    call.feed(b"")
    assert call.result == (
        False,
        f"{WHAT}: the backend closed the connection without answering; set the pool's "
        "protocol (http1 for an HTTP/1.1 backend)",
    )


def test_what_is_not_http2_is_named_so() -> None:
    call = HealthCall(b"127.0.0.1:50051")
    call.feed(b"HTTP/1.1 5")  # a status line in two reads: named whole
    assert call.result is None
    call.feed(b"05 HTTP Version Not Supported\r\n\r\n")
    assert call.result == (
        False,
        f"{WHAT}: the backend does not speak HTTP/2 (h2c), it answered HTTP/1.1 505; set "
        "the pool's protocol (http1 for an HTTP/1.1 backend)",
    )
    call = HealthCall(b"127.0.0.1:50051")
    call.feed(b"\x15\x03\x03\x00\x02\x02\x46")  # a TLS alert: an https server
    call.feed(b"")
    assert call.result == (
        False,
        f"{WHAT}: the backend does not speak HTTP/2 (h2c); set the pool's protocol (http1 "
        "for an HTTP/1.1 backend)",
    )
    call = HealthCall(b"127.0.0.1:50051")
    call.feed(b"\x00\x00\x00\x01\x00\x00\x00\x00\x00")  # a HEADERS frame first, on stream 0
    assert call.result is not None and "does not speak HTTP/2 (h2c)" in call.result[1]
