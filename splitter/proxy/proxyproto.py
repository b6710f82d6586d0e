"""The PROXY protocol header (HAProxy's v1 and v2), as an L4 load balancer sends it ahead
of a connection's first byte, naming the client's address. Bytes only: no sockets, no clock.

    parse(data) -> (consumed, address, problem)

`data` is everything the connection has sent so far. The answer is one of:

- `(n, address, "")`, n > 0: a complete header of n bytes; what follows is the client's
  HTTP. `address` is the client's address in canonical text, or "" when the header says
  to use the connection's own peer: v2's LOCAL command (the balancer's own health check),
  v1's `UNKNOWN`, v2's `UNSPEC` and `AF_UNIX` families.
- `(0, "", "")`: incomplete, send more. Only while the bytes so far are a proper prefix of
  a header that fits the bounds below.
- `(0, "", problem)`: not a valid header: the connection is refused (closed).

Bounds, so that a peer never makes splitter hold or scan more: a v1 line is at most
V1_MAX bytes (107, the spec's worst case, CRLF included); a v2 header is 16 bytes and at
most V2_MAX_PAYLOAD more (its length field is checked as soon as it arrives, so a header
claiming 65535 bytes is refused at once, not awaited). The answer never depends on bytes
past MAX_HEADER. Version 2 TLVs (after the addresses, within the length) are skipped
unread. Only stream families are taken from a v2 header (AF_INET, AF_INET6 over STREAM);
v1 takes TCP4 and TCP6. The destination address and the ports are checked, then ignored.
The time a header may take is `limits.header_timeout`, enforced by the connection.

Spec: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt
"""

from __future__ import annotations

import socket
from typing import Final

from splitter.proxy.clientaddr import canonical, format_address

__all__ = ["MAX_HEADER", "V1_MAX", "V2_MAX_PAYLOAD", "V2_SIGNATURE", "parse"]

V1_PREFIX: Final = b"PROXY "
V1_MAX: Final = 107
V2_SIGNATURE: Final = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED: Final = 16  # signature, version and command, family, length
# Addresses (at most 216 bytes, for AF_UNIX) and TLVs: AWS, GCP and Azure send under 300
# bytes; a TLS TLV with a client certificate's names stays well under this.
V2_MAX_PAYLOAD: Final = 2048
MAX_HEADER: Final = V2_FIXED + V2_MAX_PAYLOAD

_NEED_MORE: Final = (0, "", "")
_USE_PEER: Final = ""


def parse(data: bytes) -> tuple[int, str, str]:
    """See the module docstring."""
    if not data:
        return _NEED_MORE
    first = data[0]
    if first == 0x50:  # "P"
        return _parse_v1(data)
    if first == 0x0D:  # "\r"
        return _parse_v2(data)
    return 0, "", "no PROXY protocol header"


def _refused(problem: str) -> tuple[int, str, str]:
    return 0, "", problem


def _parse_v1(data: bytes) -> tuple[int, str, str]:
    head = data[:V1_MAX]
    if head[:6] != V1_PREFIX[: len(head)]:
        return _refused("no PROXY protocol header")
    end = head.find(b"\r\n")
    if end < 0:
        if len(head) >= V1_MAX:
            return _refused("PROXY v1 header too long")
        if b"\n" in head or b"\r" in head[:-1]:
            return _refused("invalid PROXY v1 header")
        return _NEED_MORE
    parts = head[6:end].split(b" ")
    proto = parts[0]
    if proto == b"UNKNOWN":  # the balancer cannot say: the spec says to use the peer
        return end + 2, _USE_PEER, ""
    if len(parts) != 5 or proto not in (b"TCP4", b"TCP6"):
        return _refused("invalid PROXY v1 header")
    source, destination, source_port, destination_port = parts[1:]
    want_v6 = proto == b"TCP6"
    address = _v1_address(source, want_v6)
    if (
        not address
        or not _v1_address(destination, want_v6)
        or not _v1_port(source_port)
        or not _v1_port(destination_port)
    ):
        return _refused("invalid PROXY v1 header")
    return end + 2, address, ""


def _v1_address(text: bytes, v6: bool) -> str:
    """The canonical text of a v1 address of the family its protocol names, else ""."""
    if (b":" in text) != v6:
        return ""
    return canonical(text.decode("latin-1"))


def _v1_port(text: bytes) -> bool:
    # Decimal 0..65535 without a leading zero (the spec's form).
    return (
        0 < len(text) <= 5
        and text.isdigit()
        and (text[:1] != b"0" or text == b"0")
        and int(text) <= 65535
    )


def _parse_v2(data: bytes) -> tuple[int, str, str]:
    fixed = data[:V2_FIXED]
    signature = fixed[:12]
    if signature != V2_SIGNATURE[: len(signature)]:
        return _refused("no PROXY protocol header")
    if len(fixed) < V2_FIXED:
        return _NEED_MORE
    version_command, family = fixed[12], fixed[13]
    length = (fixed[14] << 8) | fixed[15]
    if version_command >> 4 != 2:
        return _refused("unsupported PROXY protocol version")
    command = version_command & 0x0F
    if command > 1:
        return _refused("invalid PROXY v2 command")
    if length > V2_MAX_PAYLOAD:
        return _refused("PROXY v2 header too long")
    total = V2_FIXED + length
    if len(data) < total:
        return _NEED_MORE
    if command == 0:  # LOCAL: the balancer's own connection (a health check)
        return total, _USE_PEER, ""
    if family == 0x11:  # AF_INET, STREAM: source, destination (4 bytes each), 2 ports
        if length < 12:
            return _refused("PROXY v2 addresses cut short")
        value = int.from_bytes(data[V2_FIXED : V2_FIXED + 4], "big")
        return total, format_address(4, value), ""
    if family == 0x21:  # AF_INET6, STREAM: 16 bytes each, 2 ports
        if length < 36:
            return _refused("PROXY v2 addresses cut short")
        address = socket.inet_ntop(socket.AF_INET6, data[V2_FIXED : V2_FIXED + 16])
        return total, canonical(address), ""
    if family == 0x00 or family == 0x31:  # UNSPEC, AF_UNIX STREAM: no address we can use
        return total, _USE_PEER, ""
    return _refused("unsupported PROXY v2 address family")
