"""Which route takes a request, and which of its segments (if any) the request belongs to.

Pure: data in, data out, stdlib only, no I/O. Both run for every request, so the config is
compiled once into dicts and tuples, and a request costs a few dict lookups and a short
scan; the path is compared as bytes, never with a regular expression.

Rules (docs/configuration.md#routes-and-segments):

**Route choice** (`RouteTable.match`, -1 when no route matches: a 404):

- *Host.* The Host header's value without its port, case-insensitively, one trailing dot
  ignored (``Example.COM.:8080`` is ``example.com``). An IPv6 literal is compared in its
  canonical text, in brackets (``[2001:DB8:0::1]:8080`` is ``[2001:db8::1]``), on both
  sides. Nothing is percent-decoded or IDNA-converted: a name is its ASCII (punycode) form.
  A request without Host (HTTP/1.0) can only match the routes without `hosts`.
- *Wildcards.* ``*.example.com`` matches a host with one or more labels in front of
  ``.example.com`` (``a.example.com``, ``a.b.example.com``), never ``example.com`` itself.
- *Path.* `path_prefix` matches whole segments: the target starts with the prefix and the
  next byte is the end, ``/``, ``?`` or ``#`` (``/api``: ``/api``, ``/api/x``, ``/api?q``,
  not ``/apix``); ``/`` matches every path. The target ``*`` (``OPTIONS *``), or any
  target not starting with ``/``, is matched as the path ``/``: only the routes with the
  prefix ``/`` take it (it asks about the server, which is the site's root).
- *Precedence.* Among the routes whose host entry and prefix both match: a route naming the
  host exactly beats a wildcard route, a more specific wildcard (a longer suffix) beats a
  less specific one, and any of those beats a route without `hosts`; within one of these
  classes the longest prefix wins. A class whose prefixes do not match gives way to the
  next: with A (hosts ``x.com``, prefix ``/api``) and B (no hosts, prefix ``/``),
  ``x.com/other`` goes to B. Two routes that could tie (the same prefix and a shared host
  entry, or both without hosts and the same prefix) are a config error, refused by the
  config parser; were one to get here, the one first in the config wins.
- *Raw bytes.* The path is compared byte for byte, case-sensitively, without decoding
  percent-escapes or removing dot segments: ``/api`` does not match ``/%61pi``, and
  ``/api/../admin`` matches ``/api``; a prefix is its UTF-8 bytes, so one beyond ASCII is
  written as clients send it, percent-encoded. The path and Host reach the backend unchanged. (nginx
  decodes and normalises before matching a `location`; splitter does not, so what it
  matches is exactly what the backend receives.) **Routes are not access control**: a
  prefix chooses which service answers, it does not keep anyone from another service's
  paths. A client can always write a path so that it falls to another route (``/%61pi``
  reaches the route of ``/``), whose backend may decode it into something it serves; every
  backend must enforce its own access rules on the path it decodes.

**Segments** (`SegmentMatcher.match`, per route, in config order, the first that matches
wins; None: no segment, the weights decide):

- *header* ``{name, value?}``: the request's first header of that name (compared
  case-insensitively), its value stripped of surrounding whitespace. No `value`: present
  with any value, empty included; else equal to `value` (stripped too), byte for byte.
  Later headers of the same name are ignored, whatever they say (the request parser keeps
  the first: `RequestHead.segment_values`).
- *cookie* ``{name, value?}``: the first cookie of that name in the Cookie header(s)
  (`splitter.routing.cookie_from_header`: spaces around it and double quotes dropped).
- *query* ``{name, value?}``: the first parameter of that name in the query string (after
  ``?``, before ``#``), split at ``&``; name and value are compared after decoding them as
  browsers encode forms (``+`` is a space, then percent-escapes; an invalid escape stays as
  written). A parameter without ``=`` is present with the value "". So ``?beta=0&beta=1``
  has beta = "0"; ``?%62eta=1`` has beta = "1".
- *source* ``[CIDRs]``: the client's address (`client`, as `splitter.proxy.clientaddr`
  resolved it) in one of the networks; an IPv4-mapped IPv6 address (``::ffff:10.1.2.3``)
  is its IPv4 address, and an IPv4-mapped network is its IPv4 network.
- Header names, cookie and query names and values from the config are UTF-8; the request's
  bytes are compared as they came (a cookie as Latin-1, which keeps every byte).

The first of a name, throughout: it is what `cookie_from_header` does, and a request that
repeats a name gets the same answer from every rule. (The override header is no segment:
`splitter.http1.request` keeps its last value.)

Theory of operation (routes)
----------------------------
Every request reduces to one *candidate list*: the (prefix, route) pairs its host can
take, in precedence order, each class sorted longest prefix first. The lists are built
once, for each exact host entry (its routes, then every wildcard that matches that host,
most specific first, then the routes without hosts), for each wildcard suffix (its routes,
the less specific wildcards, the routes without hosts) and for a request whose host is
none of them (the routes without hosts). `match` finds the list and returns the first
pair whose prefix matches, so the first match is the best one:

- an exact host is one dict lookup;
- otherwise the host's label suffixes are looked up longest first (``a.b.example.com``:
  ``b.example.com``, ``example.com``, ``com``); the first found is the most specific
  wildcard, and its list holds every less specific one;
- the list found for a Host value is cached by the value as it came (port, case, dot and
  all; up to `_HOST_CACHE` values, emptied when full, values over 260 bytes not cached), so
  a known Host costs one dict lookup and no allocation;
- a table of one route without hosts and with the prefix ``/`` (the top-level `pools`)
  answers 0 without looking (`only`); a table without any hosts ignores Host.

Theory of operation (segments)
------------------------------
Each segment is compiled into a `_Rule`: header and query names and values as bytes,
cookie names and values as text, source networks as (network, mask) integers, as in
`splitter.proxy.clientaddr` (whose parser is repeated here: the proxy layer sits above
this module). Whether a client address is in each source segment is computed once per
address and cached as a bit mask. The Cookie header is decoded and the query string found
only when a rule needs them, once per request. `header_names` are the headers the request
parser must keep for `match` (`splitter.http1.request.ReadSettings.segment_headers`).
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Final
from urllib.parse import unquote_to_bytes

from splitter.config.model import Route, Segment
from splitter.routing import cookie_from_header

__all__ = ["RouteTable", "SegmentMatcher", "host_key"]

# Candidate lists: (prefix, route index) pairs, the prefix "/" stored as b"" (see _prefix).
Candidates = tuple[tuple[bytes, int], ...]
Networks = tuple[tuple[int, int], ...]  # (network, mask) integers

_HOST_CACHE: Final = 1024  # Host values remembered; the cache is emptied when full
_HOST_CACHE_LEN: Final = 260  # longer values (no DNS name is) are not remembered
_CLIENT_CACHE: Final = 4096  # client addresses remembered by a SegmentMatcher

# Bound once.
_inet_pton = socket.inet_pton
_inet_ntop = socket.inet_ntop
_AF_INET: Final = socket.AF_INET
_AF_INET6: Final = socket.AF_INET6

_V4_MAPPED: Final = 0xFFFF << 32  # ::ffff:0:0/96
_V4_MAPPED_MASK: Final = ((1 << 96) - 1) << 32

# The bytes that end a path segment after a prefix: "/", "?", "#".
_SLASH: Final = 47
_QUESTION: Final = 63
_HASH: Final = 35


def host_key(host: bytes) -> bytes:
    """A Host value as routes compare it: without its port, lower-case, one trailing dot
    dropped, an IPv6 literal in its canonical text in brackets. Config hosts go through it
    too (they have no port), so both sides are compared in the same form."""
    if host[:1] == b"[":
        close = host.find(b"]")
        if close < 0:
            return host.lower()  # not a valid literal: matches no route's host
        literal = host[1:close]
        try:
            text = _inet_ntop(_AF_INET6, _inet_pton(_AF_INET6, literal.decode("latin-1")))
        except (OSError, ValueError):
            return host[: close + 1].lower()
        return b"[" + text.encode("ascii") + b"]"
    colon = host.find(b":")
    if colon >= 0:
        host = host[:colon]
    if host[-1:] == b".":
        host = host[:-1]
    return host.lower()


def _prefix(path_prefix: str) -> bytes:
    """The stored form of a prefix: "/" is b"" (it then matches every target that starts
    with "/", by the same boundary test as the others)."""
    if not path_prefix.startswith("/"):
        raise ValueError(f"a path prefix starts with '/': {path_prefix!r}")
    if path_prefix == "/":
        return b""
    return path_prefix.rstrip("/").encode()


def _sorted(pairs: list[tuple[bytes, int]]) -> list[tuple[bytes, int]]:
    """Longest prefix first; equal lengths keep config order (stable)."""
    return sorted(pairs, key=lambda pair: -len(pair[0]))


class RouteTable:
    """The compiled routes of a config: `match` gives the index of the route that takes a
    request (see the module docstring for the rules and their cost)."""

    __slots__ = (
        "_cache",
        "anyhost",
        "by_host",
        "exact",
        "matchers",
        "only",
        "routes",
        "segment_headers",
        "wildcard",
    )

    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = tuple(routes)
        exact_own: dict[bytes, list[tuple[bytes, int]]] = {}
        wild_own: dict[bytes, list[tuple[bytes, int]]] = {}
        hostless: list[tuple[bytes, int]] = []
        for index, route in enumerate(self.routes):
            prefix = _prefix(route.path_prefix)
            if not route.hosts:
                hostless.append((prefix, index))
            for entry in route.hosts:
                if entry.startswith("*."):
                    suffix = host_key(entry[2:].encode())
                    if not suffix or b"*" in suffix:
                        raise ValueError(f"not a host: {entry!r}")
                    wild_own.setdefault(suffix, []).append((prefix, index))
                else:
                    name = host_key(entry.encode())
                    if not name or b"*" in name:
                        raise ValueError(f"not a host: {entry!r}")
                    exact_own.setdefault(name, []).append((prefix, index))
        self.anyhost: Candidates = tuple(_sorted(hostless))
        wild_sorted = {suffix: _sorted(pairs) for suffix, pairs in wild_own.items()}

        def wild_of(host: bytes) -> list[tuple[bytes, int]]:
            """The wildcard pairs that match `host`, most specific first."""
            found: list[tuple[bytes, int]] = []
            if host[:1] == b"[":
                return found  # an IP literal has no labels
            dot = host.find(b".")
            while dot >= 0:
                if dot > 0:  # at least one (non-empty) label in front
                    found += wild_sorted.get(host[dot + 1 :], ())
                dot = host.find(b".", dot + 1)
            return found

        def candidates(own: list[tuple[bytes, int]], wild: list[tuple[bytes, int]]) -> Candidates:
            seen: set[tuple[bytes, int]] = set()
            result: list[tuple[bytes, int]] = []
            for pair in [*own, *wild, *self.anyhost]:
                if pair not in seen:  # a route listed twice for one host: the first counts
                    seen.add(pair)
                    result.append(pair)
            return tuple(result)

        self.exact: dict[bytes, Candidates] = {
            name: candidates(_sorted(pairs), wild_of(name)) for name, pairs in exact_own.items()
        }
        # A wildcard's list: its own pairs, then the less specific wildcards' (those that
        # match its suffix as a host: "*.example.com" for "shop.example.com").
        self.wildcard: dict[bytes, Candidates] = {
            suffix: candidates(pairs, wild_of(suffix)) for suffix, pairs in wild_sorted.items()
        }
        self.by_host = bool(self.exact or self.wildcard)
        # One route for every request: no need to look.
        only = len(self.routes) == 1 and not self.by_host and self.anyhost[0][0] == b""
        self.only = 0 if only else -1
        self._cache: dict[bytes, Candidates] = {}
        self.matchers = tuple(SegmentMatcher(route.segments) for route in self.routes)
        names: set[bytes] = set()
        for matcher in self.matchers:
            names |= matcher.header_names
        # Every header a segment of some route reads (ReadSettings.segment_headers).
        self.segment_headers = frozenset(names)

    def match(self, host: bytes | None, target: bytes) -> int:
        """The index of the route that takes a request with this Host value (None: no Host
        header) and request target (origin form, or `*`); -1 when no route does."""
        if self.only >= 0:
            return self.only
        if host is None or not self.by_host:
            candidates = self.anyhost
        else:
            found = self._cache.get(host)
            if found is None:
                found = self._lookup(host)
                if len(host) <= _HOST_CACHE_LEN:
                    cache = self._cache
                    if len(cache) >= _HOST_CACHE:
                        cache.clear()
                    cache[host] = found
            candidates = found
        if target[:1] != b"/":
            target = b"/"  # `*`: only the prefix "/" takes it
        size = len(target)
        for prefix, index in candidates:
            if target.startswith(prefix):
                n = len(prefix)
                if n == size:
                    return index
                c = target[n]
                if c == _SLASH or c == _QUESTION or c == _HASH:
                    return index
        return -1

    def _lookup(self, host: bytes) -> Candidates:
        """The candidate list of a Host value: its exact entry, else its most specific
        wildcard, else the routes without hosts."""
        key = host_key(host)
        found = self.exact.get(key)
        if found is not None:
            return found
        wildcard = self.wildcard
        if wildcard and key[:1] != b"[":
            dot = key.find(b".")
            while dot >= 0:
                if dot > 0:
                    found = wildcard.get(key[dot + 1 :])
                    if found is not None:
                        return found
                dot = key.find(b".", dot + 1)
        return self.anyhost


# -- segments ---------------------------------------------------------------------------------

_HEADER: Final = 0
_COOKIE: Final = 1
_QUERY: Final = 2
_SOURCE: Final = 3
_KINDS: Final = {"header": _HEADER, "cookie": _COOKIE, "query": _QUERY, "source": _SOURCE}


def parse_address(text: str) -> tuple[int, int]:
    """(4 or 6, the address as an integer) for an IP address's text; (0, 0) for anything
    else. An IPv4-mapped IPv6 address is its IPv4 address. (`splitter.proxy.clientaddr` uses
    it too.)"""
    if not text or len(text) > 45 or not text.isascii():
        return 0, 0
    try:
        if ":" in text:
            value = int.from_bytes(_inet_pton(_AF_INET6, text), "big")
            if value & _V4_MAPPED_MASK == _V4_MAPPED:
                return 4, value & 0xFFFFFFFF
            return 6, value
        return 4, int.from_bytes(_inet_pton(_AF_INET, text), "big")
    except (OSError, ValueError):
        return 0, 0


def _networks(cidrs: Sequence[str]) -> tuple[Networks, Networks]:
    """CIDRs as (network, mask) integers: IPv4 (mapped networks included) and IPv6."""
    v4: list[tuple[int, int]] = []
    v6: list[tuple[int, int]] = []
    for cidr in cidrs:
        address, _, length = cidr.partition("/")
        family, value = parse_address(address)
        if not family or (length and not length.isdigit()):
            raise ValueError(f"not a CIDR: {cidr}")
        bits = 32 if family == 4 else 128
        prefix = int(length) if length else bits
        if family == 4 and ":" in address:  # an IPv4-mapped network
            prefix -= 96
        if not 0 <= prefix <= bits:
            raise ValueError(f"not a CIDR: {cidr}")
        mask = ((1 << bits) - 1) ^ ((1 << (bits - prefix)) - 1)
        (v4 if family == 4 else v6).append((value & mask, mask))
    return tuple(v4), tuple(v6)


def _form_decode(raw: bytes) -> bytes:
    """A query parameter's name or value as browsers encode forms: `+` is a space, then
    percent-escapes (an invalid one stays as written)."""
    if b"%" not in raw and b"+" not in raw:
        return raw
    return unquote_to_bytes(raw.replace(b"+", b" "))


def query_value(query: bytes, name: bytes) -> bytes | None:
    """The first value of parameter `name` in a query string (without `?`), both decoded;
    b"" for a parameter without `=`; None when it is absent."""
    plain = b"%" not in query and b"+" not in query
    if plain and name not in query:  # the common miss costs one substring scan
        return None
    for part in query.split(b"&"):
        if not part:
            continue
        key, _, value = part.partition(b"=")
        if plain:
            if key == name:
                return value
        elif _form_decode(key) == name:
            return _form_decode(value)
    return None


class _Rule:
    """One compiled segment."""

    __slots__ = ("bit", "key", "kind", "pool", "text", "text_value", "v4", "v6", "value")

    def __init__(self, segment: Segment, bit: int) -> None:
        kind = _KINDS.get(segment.kind)
        if kind is None:
            raise ValueError(f"unknown segment kind: {segment.kind!r}")
        self.kind: int = kind
        self.pool: str = segment.pool
        value = segment.value
        self.key = b""  # header name (lower-case) or query parameter name
        self.value: bytes | None = None
        self.text = ""  # cookie name, as `cookie_from_header` compares it
        self.text_value: str | None = None
        self.bit = 0  # source: this rule's bit in a client's mask
        self.v4: Networks = ()
        self.v6: Networks = ()
        if kind == _HEADER:
            self.key = segment.name.strip().lower().encode()
            self.value = None if value is None else value.strip().encode()
        elif kind == _COOKIE:
            self.text = segment.name.encode().decode("latin-1")
            self.text_value = None if value is None else value.encode().decode("latin-1")
        elif kind == _QUERY:
            self.key = segment.name.encode()
            self.value = None if value is None else value.encode()
        else:
            self.bit = bit
            self.v4, self.v6 = _networks(segment.source)

    def contains(self, family: int, address: int) -> bool:
        for network, mask in self.v4 if family == 4 else self.v6:
            if address & mask == network:
                return True
        return False


class SegmentMatcher:
    """The compiled segments of one route: `match` gives the pool of the first segment a
    request belongs to (see the module docstring)."""

    __slots__ = ("_clients", "empty", "header_names", "rules", "segments")

    def __init__(self, segments: Sequence[Segment]) -> None:
        self.segments = tuple(segments)
        rules: list[_Rule] = []
        sources = 0
        for segment in self.segments:
            rules.append(_Rule(segment, 1 << sources))
            if segment.kind == "source":
                sources += 1
        self.rules = tuple(rules)
        self.empty = not rules
        # The headers `match` reads, lower-case: what the request parser must keep.
        self.header_names = frozenset(r.key for r in rules if r.kind == _HEADER)
        self._clients: dict[str, int] = {}  # client address -> its source rules' bits

    def match(
        self,
        headers: dict[bytes, bytes] | None,
        cookie: bytes | None,
        target: bytes,
        client: str,
    ) -> str | None:
        """The pool of the first segment this request belongs to; None for none.

        `headers`: the values `header_names` captured (lower-case name -> first value,
        stripped), None when none was sent; `cookie`: the Cookie header(s) as sent; `target`:
        the request target; `client`: the client's address."""
        if self.empty:
            return None
        cookies: str | None = None
        query: bytes | None = None
        sources = -1
        for rule in self.rules:
            kind = rule.kind
            if kind == _HEADER:
                if headers is None:
                    continue
                got = headers.get(rule.key)
                if got is not None and (rule.value is None or got == rule.value):
                    return rule.pool
            elif kind == _COOKIE:
                if cookie is None:
                    continue
                if cookies is None:
                    cookies = cookie.decode("latin-1")
                text = cookie_from_header(cookies, rule.text)
                if text is not None and (rule.text_value is None or text == rule.text_value):
                    return rule.pool
            elif kind == _QUERY:
                if query is None:
                    query = _query(target)
                if not query:
                    continue
                got = query_value(query, rule.key)
                if got is not None and (rule.value is None or got == rule.value):
                    return rule.pool
            else:
                if sources < 0:
                    sources = self._sources(client)
                if sources & rule.bit:
                    return rule.pool
        return None

    def _sources(self, client: str) -> int:
        """The bits of the source rules whose networks hold `client` (cached)."""
        hit = self._clients.get(client)
        if hit is not None:
            return hit
        family, address = parse_address(client)
        bits = 0
        if family:
            for rule in self.rules:
                if rule.kind == _SOURCE and rule.contains(family, address):
                    bits |= rule.bit
        cache = self._clients
        if len(cache) >= _CLIENT_CACHE:
            cache.clear()
        cache[client] = bits
        return bits


def _query(target: bytes) -> bytes:
    """The query string of a request target (after `?`, before `#`); b"" when none."""
    end = target.find(b"#")
    if end < 0:
        end = len(target)
    start = target.find(b"?", 0, end)
    return b"" if start < 0 else target[start + 1 : end]
