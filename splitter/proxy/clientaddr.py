"""Whose request is this: the client's address (docs/rollouts.md, "Evidence no client can
steer").

Rules (what nginx does with `set_real_ip_from`, `real_ip_header X-Forwarded-For` and
`real_ip_recursive on`):

- A connection's address is its peer, or with `proxy_protocol`, the source that its PROXY
  header names (`proxyproto`). When that address is not in `trusted_proxies`, it is the
  client's address, whatever the requests say.
- When it is in `trusted_proxies`, each request's `X-Forwarded-For` is walked from the right:
  every address in `trusted_proxies` is a proxy of ours, which appended the address it saw
  on its left; the first address that is not one of ours is the client. Everything left of
  it was written by the client (or by proxies it chose) and is never read.
- An entry that is not an address (`unknown`, a name, garbage) stops the walk: the last
  address read (a trusted proxy, or the peer itself) is the client. Reading on past it
  would believe bytes that no trusted proxy vouched for; stopping gives the address of the
  last hop we trust, which a client cannot choose. When every entry is a trusted proxy,
  the leftmost is the client. Empty list elements (`a,,b`) are skipped (RFC 9110 5.6.1).
- An entry is an IPv4 or IPv6 address, optionally with a port (`192.0.2.1:4711`,
  `[2001:db8::1]:4711`, as some load balancers write it); the port is dropped.
- The text form is canonical (`inet_ntop`: IPv6 compressed and lower-case) and an
  IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, the peer of an IPv4 client on a dual-stack
  listener) is written as its IPv4 address: one client has one address, however it came.

Operators' guide: docs/configuration.md#the-client-address.

Cost: `TrustedProxies.lookup` runs once per connection and is cached by the peer's text;
the walk runs per request only for connections from a trusted proxy, and stops at the
first address that is not trusted, so its cost is the number of our own hops, not the
length of what a client sent. The CIDRs are compiled into (network, mask) integers.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from typing import Final

from splitter.routetable import parse_address  # the one parser of addresses, below us

__all__ = ["TrustedProxies", "canonical", "parse_address"]

_CACHE_MAX: Final = 4096  # peers remembered; the cache is emptied when it is full
_OWS: Final = b" \t"


def format_address(family: int, value: int) -> str:
    if family == 4:
        return socket.inet_ntop(socket.AF_INET, value.to_bytes(4, "big"))
    return socket.inet_ntop(socket.AF_INET6, value.to_bytes(16, "big"))


def canonical(text: str) -> str:
    """The canonical text of an IP address; "" when `text` is not one."""
    family, value = parse_address(text)
    return format_address(family, value) if family else ""


def _entry_address(entry: bytes) -> str:
    """An X-Forwarded-For entry's address text, its port (if any) dropped; "" when the
    entry is neither `address`, `ipv4:port`, `[ipv6]` nor `[ipv6]:port`."""
    if entry[:1] == b"[":
        close = entry.find(b"]")
        if close < 0:
            return ""
        rest = entry[close + 1 :]
        if rest and not (rest[:1] == b":" and _is_port(rest[1:])):
            return ""
        host = entry[1:close]
        if b":" not in host:
            return ""  # brackets hold an IPv6 address only
    elif entry.count(b":") == 1:  # ipv4:port
        host, _, port = entry.partition(b":")
        if not _is_port(port):
            return ""
    else:
        host = entry
    return host.decode("latin-1")


def _is_port(text: bytes) -> bool:
    return 0 < len(text) <= 5 and text.isdigit() and int(text) <= 65535


class TrustedProxies:
    """The compiled `trusted_proxies`: membership of an address, and the client found in a
    request's X-Forwarded-For (see the module docstring)."""

    def __init__(self, cidrs: Iterable[str] = ()) -> None:
        self.cidrs = tuple(cidrs)  # as the config normalised them
        v4: list[tuple[int, int]] = []
        v6: list[tuple[int, int]] = []
        for cidr in self.cidrs:
            address, _, length = cidr.partition("/")
            family, value = parse_address(address)
            if not family:
                raise ValueError(f"not a CIDR: {cidr}")
            bits = 32 if family == 4 else 128
            prefix = int(length) if length else bits
            if family == 4 and ":" in address:  # an IPv4-mapped network
                prefix -= 96
            if not 0 <= prefix <= bits:
                raise ValueError(f"not a CIDR: {cidr}")
            mask = ((1 << bits) - 1) ^ ((1 << (bits - prefix)) - 1)
            (v4 if family == 4 else v6).append((value & mask, mask))
        self.v4 = tuple(v4)
        self.v6 = tuple(v6)
        self.empty = not v4 and not v6
        self._cache: dict[str, tuple[str, bool]] = {}

    def contains(self, family: int, value: int) -> bool:
        for network, mask in self.v4 if family == 4 else self.v6:
            if value & mask == network:
                return True
        return False

    def lookup(self, address: str) -> tuple[str, bool]:
        """(canonical text, whether it is a trusted proxy) of a connection's address; the
        text as given when it is not an IP address (never trusted). Cached by the text."""
        hit = self._cache.get(address)
        if hit is not None:
            return hit
        family, value = parse_address(address)
        if family:
            result = (format_address(family, value), self.contains(family, value))
        else:
            result = (address, False)
        cache = self._cache
        if len(cache) >= _CACHE_MAX:
            cache.clear()
        cache[address] = result
        return result

    def client(self, xff: bytes, address: str) -> str:
        """The client of a request that came from `address`, a trusted proxy, with this
        X-Forwarded-For value (several headers joined by commas, in order)."""
        end = len(xff)
        while end > 0:
            comma = xff.rfind(b",", 0, end)
            entry = xff[comma + 1 : end].strip(_OWS)
            end = comma
            if not entry:
                continue
            family, value = parse_address(_entry_address(entry))
            if not family:
                return address  # not an address: nothing left of it is believed
            address = format_address(family, value)
            if not self.contains(family, value):
                return address
        return address
