"""gRPC's pure parts (splitter.http2.grpc): content types, statuses, grpc-message, the
trailers-only failure, and the health check's bytes, computed by hand from the protobuf
encoding rules (https://protobuf.dev/programming-guides/encoding/)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from splitter.config import Limits
from splitter.http2.grpc import (
    BAD_STATUSES,
    HEALTH_PATH,
    HEALTH_REQUEST,
    MAX_HEALTH_MESSAGE,
    HealthAnswer,
    decode_message,
    encode_message,
    failure_status,
    grpc_status,
    health_request_fields,
    is_bad,
    is_grpc,
    judge_health,
    read_health_response,
    trailers_only,
)
from splitter.http2.headers import check_trailers


@pytest.mark.parametrize(
    ("content_type", "grpc"),
    [
        (b"application/grpc", True),
        (b"application/grpc+proto", True),
        (b"application/grpc+json", True),
        (b"Application/GRPC", True),
        (b"application/grpc; charset=utf-8", True),
        (b"application/grpc-web", False),
        (b"application/grpc-web+proto", False),
        (b"application/grpc-web-text", False),
        (b"application/grpcx", False),
        (b"application/json", False),
        (b"", False),
        (None, False),
    ],
)
def test_which_requests_are_grpc(content_type: bytes | None, grpc: bool) -> None:
    assert is_grpc(content_type) is grpc


def test_the_bad_statuses_are_section_14s() -> None:
    assert BAD_STATUSES == {2, 4, 12, 13, 14, 15}
    assert [code for code in range(17) if is_bad(code)] == [2, 4, 12, 13, 14, 15]


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ([(b"grpc-status", b"0"), (b"grpc-message", b"")], 0),
        ([(b"grpc-message", b"x"), (b"grpc-status", b"14")], 14),
        (
            [(b":status", b"200"), (b"content-type", b"application/grpc"), (b"grpc-status", b"12")],
            12,
        ),  # trailers-only
        ([(b"grpc-status", b"16")], 16),
        ([(b"grpc-status", b"17")], 2),  # out of range: UNKNOWN
        ([(b"grpc-status", b"abc")], 2),
        ([(b"grpc-status", b"")], 2),
        ([(b"grpc-status", b"007")], 2),
        ([(b"grpc-message", b"no status")], -1),
        ([], -1),
    ],
)
def test_the_status_of_a_trailer_list(fields: list[tuple[bytes, bytes]], code: int) -> None:
    assert grpc_status(fields) == code


@settings(max_examples=300, deadline=None)
@given(value=st.binary(max_size=6))
def test_any_grpc_status_value_gives_one_of_17_codes(value: bytes) -> None:
    assert 0 <= grpc_status([(b"grpc-status", value)]) <= 16


def test_grpc_message_is_percent_encoded_as_the_spec_says() -> None:
    assert encode_message("no healthy backend") == b"no healthy backend"
    assert encode_message("100%") == b"100%25"
    assert encode_message("caf\u00e9") == b"caf%C3%A9"
    assert encode_message("a\r\nb") == b"a%0D%0Ab"
    assert encode_message(" padded ") == b"%20padded%20"
    assert decode_message(b"caf%C3%A9 100%25") == "caf\u00e9 100%"
    # Lenient: what is not an escape stays; bytes that are not UTF-8 are replaced.
    assert decode_message(b"50% off, %G1, %4") == "50% off, %G1, %4"
    assert decode_message(b"%FF") == "\ufffd"


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=40))
def test_grpc_message_round_trips_and_is_a_valid_h2_value(text: str) -> None:
    encoded = encode_message(text)
    assert decode_message(encoded) == text
    assert all(0x20 <= b <= 0x7E for b in encoded)
    assert check_trailers([(b"grpc-message", encoded)], Limits()) == [(b"grpc-message", encoded)]


@pytest.mark.parametrize(
    ("status", "code"),
    [(502, 14), (503, 14), (504, 4), (404, 12), (413, 8), (431, 8), (400, 13), (408, 4), (501, 2)],
)
def test_splitter_fails_a_grpc_request_with_a_trailers_only_answer(status: int, code: int) -> None:
    fields = trailers_only(status, "pool canary has no live backend", b"rid-1")
    assert fields[0] == (b":status", b"200")
    assert (b"content-type", b"application/grpc") in fields
    assert grpc_status(fields) == code == failure_status(status)
    message = dict(fields)[b"grpc-message"]
    assert decode_message(message) == "pool canary has no live backend"
    assert (b"x-request-id", b"rid-1") in fields
    assert isinstance(check_trailers(fields[1:], Limits()), list)  # valid h2 fields


# -- the health checking protocol ----------------------------------------------------------


def varint(value: int) -> bytes:
    """The base-128 varint of protobuf: 7 bits a byte, low first, high bit "more"."""
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def framed(message: bytes, flag: int = 0) -> bytes:
    return bytes([flag]) + len(message).to_bytes(4, "big") + message


def test_the_request_is_an_empty_message_framed() -> None:
    # HealthCheckRequest{service: ""}: a proto3 string at its default is not written, so
    # the message has no bytes; the frame is flag 0 and a length of 0.
    assert HEALTH_REQUEST == framed(b"") == b"\x00\x00\x00\x00\x00"
    fields = health_request_fields(b"10.0.0.3:50051")
    assert fields[:4] == [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", HEALTH_PATH),
        (b":authority", b"10.0.0.3:50051"),
    ]
    assert HEALTH_PATH == b"/grpc.health.v1.Health/Check"
    assert (b"content-type", b"application/grpc") in fields and (b"te", b"trailers") in fields


@pytest.mark.parametrize("status", [0, 1, 2, 3])
def test_each_serving_status_is_read(status: int) -> None:
    # HealthCheckResponse.status is field 1, an enum: wire type 0 (varint), so its key is
    # (1 << 3) | 0 = 0x08, then the value; UNKNOWN (0), the default, is not written.
    message = b"" if status == 0 else b"\x08" + bytes([status])
    assert read_health_response(framed(message)) == HealthAnswer(status)
    assert read_health_response(framed(message)).serving is (status == 1)


def test_serving_is_the_exact_bytes_a_server_sends() -> None:
    assert read_health_response(b"\x00\x00\x00\x00\x02\x08\x01") == HealthAnswer(1)


def test_unknown_fields_are_skipped_and_the_last_status_wins() -> None:
    message = (
        b"\x12\x03abc"  # field 2, length-delimited
        + b"\x08\x02"  # status NOT_SERVING
        + b"\x19"
        + bytes(8)  # field 3, fixed64
        + b"\x25"
        + bytes(4)  # field 4, fixed32
        + b"\x28"
        + varint(300)  # field 5, varint
        + b"\x08\x01"  # status SERVING: the last one wins
    )
    assert read_health_response(framed(message)) == HealthAnswer(1)


def test_a_status_a_newer_server_sends_is_kept_and_is_not_serving() -> None:
    assert read_health_response(framed(b"\x08\x07")) == HealthAnswer(7)
    negative = read_health_response(framed(b"\x08" + varint(-1)))  # int32 -1: 10 bytes
    assert negative == HealthAnswer(-1, "") and not negative.serving
    # A varint over 32 bits is cut to an int32, as protobuf's parsers do.
    assert read_health_response(framed(b"\x08" + varint((1 << 32) + 1))) == HealthAnswer(1)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"", "no message"),
        (b"\x00\x00\x00", "truncated message"),
        (b"\x00\x00\x00\x00\x05\x08", "truncated message"),
        (framed(b"\x08\x01", flag=1), "compressed message"),
        (framed(b"\x08\x01", flag=2), "malformed message frame"),
        (b"\x00" + (MAX_HEALTH_MESSAGE + 1).to_bytes(4, "big"), "message too large"),
        (b"\x00\xff\xff\xff\xff", "message too large"),
        (framed(b"\x08\x01") + framed(b"\x08\x01"), "more than one message"),
        (framed(b"\x08"), "malformed protobuf"),  # a key with no value
        (framed(b"\x08\x80"), "malformed protobuf"),  # a varint that never ends
        (framed(b"\x08" + b"\xff" * 10 + b"\x01"), "malformed protobuf"),  # over 10 bytes
        (framed(b"\x0a\x01\x01"), "malformed protobuf"),  # status as a string
        (framed(b"\x00\x01"), "malformed protobuf"),  # field 0
        (framed(b"\x0b"), "malformed protobuf"),  # a group (wire type 3)
        (framed(b"\x0e"), "malformed protobuf"),  # wire type 6
        (framed(b"\x12\x05ab"), "malformed protobuf"),  # a length past the end
        (framed(b"\x19\x00"), "malformed protobuf"),  # a fixed64 cut short
    ],
)
def test_what_is_refused(body: bytes, problem: str) -> None:
    assert read_health_response(body) == HealthAnswer(-1, problem)


@settings(max_examples=500, deadline=None)
@given(body=st.binary(max_size=40))
def test_any_body_gives_a_status_or_a_problem(body: bytes) -> None:
    answer = read_health_response(body)
    if answer.problem:
        assert answer.status == -1
    else:
        assert -(2**31) <= answer.status < 2**31


@settings(max_examples=300, deadline=None)
@given(status=st.integers(min_value=0, max_value=2**31 - 1), noise=st.binary(max_size=8))
def test_a_status_round_trips_whatever_unknown_field_comes_before(
    status: int, noise: bytes
) -> None:
    message = b"\x12" + varint(len(noise)) + noise + b"\x08" + varint(status)
    assert read_health_response(framed(message)) == HealthAnswer(status)


GRPC_HEADERS = [(b":status", b"200"), (b"content-type", b"application/grpc")]


def test_a_probe_is_up_only_for_ok_and_serving() -> None:
    ok = [(b"grpc-status", b"0")]
    assert judge_health(200, GRPC_HEADERS, framed(b"\x08\x01"), ok) == (
        True,
        "grpc.health.v1.Health/Check answered SERVING",
    )
    up, what = judge_health(200, GRPC_HEADERS, framed(b"\x08\x02"), ok)
    assert not up and what.endswith("NOT_SERVING")
    up, what = judge_health(200, GRPC_HEADERS, framed(b""), ok)
    assert not up and what.endswith("UNKNOWN")
    # A trailers-only UNIMPLEMENTED: the backend has no health service.
    up, what = judge_health(200, [*GRPC_HEADERS, (b"grpc-status", b"12")], b"", [])
    assert not up and "UNIMPLEMENTED (12)" in what and "health checking protocol" in what
    up, what = judge_health(200, GRPC_HEADERS, framed(b"\x08\x01"), [(b"grpc-status", b"5")])
    assert not up and "NOT_FOUND" in what
    up, what = judge_health(200, GRPC_HEADERS, framed(b"\x08\x01"), [])
    assert not up and "no grpc-status" in what
    up, what = judge_health(404, [(b":status", b"404")], b"", [])
    assert not up and "HTTP 404" in what
    up, what = judge_health(200, [(b"content-type", b"text/html")], b"<html>", [])
    assert not up and "not a gRPC answer" in what
    up, what = judge_health(200, GRPC_HEADERS, framed(b"\x08\x01", flag=1), ok)
    assert not up and "compressed" in what
