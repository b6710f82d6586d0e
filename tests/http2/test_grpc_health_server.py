"""The health check's bytes against a real gRPC server (grpcio's own health service), over
a real loopback socket: the request framed by splitter.http2.grpc is understood, and the
body the server answers is read. The HTTP/2 client is written out by hand here (frames,
and HPACK literals without compression: RFC 7541 6.2.2): the response's headers and
trailers are not decoded, only its DATA frames read. Skipped where grpcio is not
installed (`pip install grpcio grpcio-health-checking`); test_grpc.py checks the same
bytes computed by hand."""

from __future__ import annotations

import importlib
import socket
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import pytest

from splitter.http2.grpc import (
    HEALTH_REQUEST,
    HealthAnswer,
    health_request_fields,
    read_health_response,
)

# Test extras (pyproject.toml): imported, never skipped.
grpc: Any = importlib.import_module("grpc")
health: Any = importlib.import_module("grpc_health.v1.health")
health_pb2: Any = importlib.import_module("grpc_health.v1.health_pb2")
health_pb2_grpc: Any = importlib.import_module("grpc_health.v1.health_pb2_grpc")

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY = 0, 1, 3, 4, 6, 7
END_STREAM, ACK, END_HEADERS, PADDED = 0x1, 0x1, 0x4, 0x8


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return (
        len(payload).to_bytes(3, "big")
        + bytes([kind, flags])
        + stream.to_bytes(4, "big")
        + (payload)
    )


def literal(name: bytes, value: bytes) -> bytes:
    """A literal header field without indexing, new name, no Huffman (both under 127)."""
    assert len(name) < 127 and len(value) < 127
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def health_check(port: int) -> bytes:
    """One Health/Check on stream 1; the DATA it answers, as received."""
    block = b"".join(literal(n, v) for n, v in health_request_fields(b"127.0.0.1:%d" % port))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            PREFACE
            + frame(SETTINGS, 0, 0)
            + frame(HEADERS, END_HEADERS, 1, block)
            + frame(DATA, END_STREAM, 1, HEALTH_REQUEST)
        )
        body = b""
        buffer = b""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            assert chunk, "the server closed the connection"
            buffer += chunk
            while len(buffer) >= 9:
                length = int.from_bytes(buffer[:3], "big")
                if len(buffer) < 9 + length:
                    break
                kind, flags = buffer[3], buffer[4]
                stream = int.from_bytes(buffer[5:9], "big") & 0x7FFFFFFF
                payload = buffer[9 : 9 + length]
                buffer = buffer[9 + length :]
                if kind == SETTINGS and not flags & ACK:
                    sock.sendall(frame(SETTINGS, ACK, 0))
                elif kind == PING and not flags & ACK:
                    sock.sendall(frame(PING, ACK, 0, payload))
                elif kind == DATA and stream == 1:
                    if flags & PADDED:
                        payload = payload[1 : len(payload) - payload[0]]
                    body += payload
                elif kind in (RST_STREAM, GOAWAY):
                    raise AssertionError(f"the server ended with frame type {kind}: {payload!r}")
                if stream == 1 and flags & END_STREAM:
                    return body
        raise AssertionError("no complete answer within 5 s")


@pytest.fixture
def server() -> Iterator[tuple[int, Any]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port, servicer
    finally:
        server.stop(None)


def test_a_real_server_reads_the_request_and_its_answer_is_read(
    server: tuple[int, Any],
) -> None:
    port, servicer = server
    response = health_pb2.HealthCheckResponse
    servicer.set("", response.SERVING)
    body = health_check(port)
    assert body == b"\x00\x00\x00\x00\x02\x08\x01"  # the bytes test_grpc computes by hand
    assert read_health_response(body) == HealthAnswer(1)
    servicer.set("", response.NOT_SERVING)
    assert read_health_response(health_check(port)) == HealthAnswer(2)
    servicer.set("", response.UNKNOWN)
    assert read_health_response(health_check(port)) == HealthAnswer(0)


def test_the_bytes_agree_with_the_real_protobuf_messages() -> None:
    request = health_pb2.HealthCheckRequest(service="")
    assert request.SerializeToString() == HEALTH_REQUEST[5:] == b""
    assert health_pb2.HealthCheckRequest.FromString(HEALTH_REQUEST[5:]).service == ""
    response = health_pb2.HealthCheckResponse
    for status in (
        response.UNKNOWN,
        response.SERVING,
        response.NOT_SERVING,
        response.SERVICE_UNKNOWN,
    ):
        message = response(status=status).SerializeToString()
        framed = b"\x00" + len(message).to_bytes(4, "big") + message
        assert read_health_response(framed) == HealthAnswer(status)
