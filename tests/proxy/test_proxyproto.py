"""The PROXY protocol header parser (splitter.proxy.proxyproto): bytes in, a verdict out.

Every valid header is read whole and exactly; every proper prefix of one asks for more;
anything else is refused; and no input, however long, is read past MAX_HEADER."""

from __future__ import annotations

import socket
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from splitter.proxy.proxyproto import MAX_HEADER, V1_MAX, V2_MAX_PAYLOAD, V2_SIGNATURE, parse

NEED_MORE = (0, "", "")


def v2(
    command: int = 1,
    family: int = 0x11,
    source: str = "203.0.113.7",
    destination: str = "10.0.0.1",
    tlvs: bytes = b"",
    version: int = 2,
    length: int | None = None,
) -> bytes:
    if family in (0x11, 0x12):
        addresses = socket.inet_aton(source) + socket.inet_aton(destination) + b"\x12\x34\x00\x50"
    elif family in (0x21, 0x22):
        addresses = (
            socket.inet_pton(socket.AF_INET6, source)
            + socket.inet_pton(socket.AF_INET6, destination)
            + b"\x12\x34\x00\x50"
        )
    elif family == 0x31:
        addresses = b"/tmp/a".ljust(108, b"\0") + b"/tmp/b".ljust(108, b"\0")
    else:
        addresses = b""
    payload = addresses + tlvs
    size = len(payload) if length is None else length
    fixed = bytes([version << 4 | command, family]) + struct.pack("!H", size)
    return V2_SIGNATURE + fixed + payload


VALID = [
    (b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 443\r\n", "203.0.113.7"),
    (b"PROXY TCP6 2001:DB8::7 2001:db8::1 56324 443\r\n", "2001:db8::7"),
    (b"PROXY TCP6 ::ffff:203.0.113.7 ::1 0 65535\r\n", "203.0.113.7"),  # IPv4-mapped
    (b"PROXY UNKNOWN\r\n", ""),  # "" means: the connection's own peer
    (b"PROXY UNKNOWN ffff:f::1 ffff:f::2 65535 65535\r\n", ""),
    (v2(), "203.0.113.7"),
    (v2(family=0x21, source="2001:db8::7", destination="2001:db8::1"), "2001:db8::7"),
    (v2(family=0x21, source="::ffff:198.51.100.1", destination="::1"), "198.51.100.1"),
    (v2(command=0, family=0x00), ""),  # LOCAL: the balancer's own health check
    (v2(command=0, family=0x11, source="203.0.113.7"), ""),  # LOCAL ignores the addresses
    (v2(family=0x00), ""),  # UNSPEC
    (v2(family=0x31), ""),  # AF_UNIX
    # TLVs (an AWS VPC endpoint id, a TLS TLV) are skipped unread.
    (v2(tlvs=b"\xea\x00\x17\x01vpce-08d2bf15fac5001c9" + b"\x20\x00\x05\x01\x00\x00\x00\x00"),
     "203.0.113.7"),
    (v2(tlvs=b"\x04" * (V2_MAX_PAYLOAD - 12)), "203.0.113.7"),  # as long as allowed
]  # fmt: skip


@pytest.mark.parametrize(("header", "address"), VALID)
def test_a_valid_header_is_read_exactly_and_names_the_client(header: bytes, address: str) -> None:
    rest = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    assert parse(header) == (len(header), address, "")
    assert parse(header + rest) == (len(header), address, "")


@pytest.mark.parametrize(("header", "address"), VALID)
def test_every_proper_prefix_of_a_valid_header_asks_for_more(header: bytes, address: str) -> None:
    for end in range(len(header)):
        assert parse(header[:end]) == NEED_MORE, header[:end]


REFUSED = [
    (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "no PROXY protocol header"),
    (b"\x16\x03\x01\x02\x00\x01", "no PROXY protocol header"),  # a TLS ClientHello
    (b"PROXX", "no PROXY protocol header"),
    (b"PROXY TCP4 203.0.113.7 10.0.0.1 1 2\n", "invalid PROXY v1 header"),  # bare LF
    (b"PROXY TCP4 203.0.113.7 10.0.0.1 1 2\rX", "invalid PROXY v1 header"),
    (b"PROXY TCP4 203.0.113.7  10.0.0.1 1 2\r\n", "invalid PROXY v1 header"),  # two spaces
    (b"PROXY TCP4 203.0.113.7 10.0.0.1 1\r\n", "invalid PROXY v1 header"),
    (b"PROXY TCP4 203.0.113.7 10.0.0.1 1 2 3\r\n", "invalid PROXY v1 header"),
    (b"PROXY TCP4 2001:db8::7 10.0.0.1 1 2\r\n", "invalid PROXY v1 header"),  # wrong family
    (b"PROXY TCP6 203.0.113.7 ::1 1 2\r\n", "invalid PROXY v1 header"),
    (b"PROXY TCP4 203.0.113.256 10.0.0.1 1 2\r\n", "invalid PROXY v1 header"),
    (b"PROXY TCP4 203.0.113.07 10.0.0.1 1 2\r\n", "invalid PROXY v1 header"),
    (b"PROXY TCP4 203.0.113.7 10.0.0.1 65536 2\r\n", "invalid PROXY v1 header"),
    (b"PROXY TCP4 203.0.113.7 10.0.0.1 01 2\r\n", "invalid PROXY v1 header"),
    (b"PROXY TCP4 203.0.113.7 10.0.0.1 -1 2\r\n", "invalid PROXY v1 header"),
    (b"PROXY TCP4 example.com 10.0.0.1 1 2\r\n", "invalid PROXY v1 header"),
    (b"PROXY UDP4 203.0.113.7 10.0.0.1 1 2\r\n", "invalid PROXY v1 header"),
    (b"PROXY \r\n", "invalid PROXY v1 header"),
    (b"PROXY TCP4 " + b"1" * 200, "PROXY v1 header too long"),  # no CRLF within 107 bytes
    (b"PROXY UNKNOWN " + b"x" * 92 + b"\r\n", "PROXY v1 header too long"),  # 108 bytes
    (V2_SIGNATURE[:5] + b"X", "no PROXY protocol header"),
    (v2(version=1), "unsupported PROXY protocol version"),
    (v2(version=3), "unsupported PROXY protocol version"),
    (v2(command=2), "invalid PROXY v2 command"),
    (v2(command=0xF), "invalid PROXY v2 command"),
    (v2(family=0x12), "unsupported PROXY v2 address family"),  # UDP over IPv4
    (v2(family=0x22, source="::1", destination="::1"), "unsupported PROXY v2 address family"),
    (v2(family=0x41, length=0), "unsupported PROXY v2 address family"),
    (v2(family=0x11, length=11)[:27], "PROXY v2 addresses cut short"),
    (v2(family=0x21, source="::1", destination="::1", length=35)[:51],
     "PROXY v2 addresses cut short"),
    (v2(length=V2_MAX_PAYLOAD + 1)[:16], "PROXY v2 header too long"),
    (v2(length=65535)[:16], "PROXY v2 header too long"),  # refused before any TLV arrives
]  # fmt: skip


@pytest.mark.parametrize(("data", "problem"), REFUSED)
def test_anything_else_is_refused_with_its_reason(data: bytes, problem: str) -> None:
    assert parse(data) == (0, "", problem)


def test_the_bounds_are_the_specs() -> None:
    longest_v1 = b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff " \
        b"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"  # fmt: skip
    assert len(longest_v1) == V1_MAX == 107
    assert parse(longest_v1) == (107, "", "")
    assert MAX_HEADER == 16 + V2_MAX_PAYLOAD
    assert 216 + 36 < V2_MAX_PAYLOAD < 65535  # AF_UNIX addresses and room for TLVs


def _check(data: bytes) -> tuple[int, str, str]:
    consumed, _, problem = result = parse(data)
    assert 0 <= consumed <= min(len(data), MAX_HEADER)
    assert not (consumed and problem)
    # The verdict never depends on bytes past the bound...
    assert parse(data[:MAX_HEADER]) == result
    # ...and more bytes are asked for only while the bound is not reached.
    if result == NEED_MORE:
        assert len(data) < MAX_HEADER
        if data[:1] == b"P":
            assert len(data) < V1_MAX
    return result


@settings(max_examples=500)
@given(st.binary(max_size=3 * MAX_HEADER))
def test_random_bytes_never_crash_or_read_past_the_bound(data: bytes) -> None:
    _check(data)


@settings(max_examples=500)
@given(
    st.sampled_from([b"PROXY ", b"PROXY TCP4 ", b"PROXY TCP6 ", V2_SIGNATURE]),
    st.binary(max_size=2 * MAX_HEADER),
)
def test_bytes_after_a_signature_never_crash_or_read_past_the_bound(
    prefix: bytes, data: bytes
) -> None:
    _check(prefix + data)


@given(
    st.ip_addresses(v=4) | st.ip_addresses(v=6),
    st.binary(max_size=V2_MAX_PAYLOAD - 36),
    st.binary(max_size=64),
)
def test_a_v2_header_with_any_tlvs_names_its_source(address, tlvs: bytes, rest: bytes) -> None:
    if address.version == 4:
        header = v2(family=0x11, source=str(address), tlvs=tlvs)
        expected = str(address)
    else:
        header = v2(family=0x21, source=str(address), destination="::1", tlvs=tlvs)
        mapped = address.ipv4_mapped
        expected = str(mapped) if mapped is not None else str(address)
    assert parse(header + rest) == (len(header), expected, "")


@given(st.ip_addresses(v=4) | st.ip_addresses(v=6), st.integers(0, 65535))
def test_a_v1_header_names_its_source(address, port: int) -> None:
    if address.version == 4:
        line = f"PROXY TCP4 {address} 10.0.0.1 {port} 443\r\n"
        expected = str(address)
    else:
        line = f"PROXY TCP6 {address.exploded} ::1 {port} 443\r\n"
        mapped = address.ipv4_mapped
        expected = str(mapped) if mapped is not None else str(address)
    assert parse(line.encode()) == (len(line), expected, "")
