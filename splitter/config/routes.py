"""Routes and segments (docs/configuration.md#routes-and-segments): a route's `hosts` and
`path_prefix`, a list of segments, and the check that no two routes could tie.

How a request finds its route, which these checks keep unambiguous:

- `hosts` match the request's Host without its port, case-insensitively. An entry
  "*.example.com" matches one or more labels in front of "example.com" ("a.example.com",
  "a.b.example.com"), never "example.com" itself. A route without `hosts` matches every
  Host.
- `path_prefix` matches whole path segments: "/api" matches "/api", "/api/x" and
  "/api?q", not "/apix".
- Among the routes that match, a route with the exact host beats one with a wildcard, a
  longer wildcard beats a shorter one ("*.shop.example.com" beats "*.example.com" for
  "a.shop.example.com"), and any host beats a route without `hosts`; then the longest
  `path_prefix` wins.

So two routes tie only when they have the same `path_prefix` and either neither has
`hosts`, or both list the same entry (the same name, the same wildcard or the same
address). That is a config error at the later route. Two different wildcards never tie.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from splitter.config.convert import (
    _TOKEN,
    CIDR_HINT,
    Checker,
    Convert,
    Invalid,
    cidr_items,
    join_path,
)
from splitter.config.model import Pool, Segment

__all__ = [
    "SEGMENT_KINDS",
    "Claim",
    "check_protocols",
    "check_ties",
    "route_hosts",
    "segments_section",
    "to_path_prefix",
    "to_route_host",
]

SEGMENT_KINDS = ("header", "cookie", "query", "source")
_KINDS_TEXT = "header, cookie, query or source"

# ---------------------------------------------------------------------------------------
# hosts

_DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.ASCII)
_HOST_HINT = "must be a host name (shop.example.com), a wildcard (*.example.com) or an IP address"


def to_route_host(value: Any) -> str:
    """One entry of a route's `hosts`, as it is compared with a Host without its port:
    lower-case, without a trailing dot; an IPv6 address compressed and in brackets
    ("[2001:db8::1]"), as it stands in a Host header."""
    if not isinstance(value, str):
        raise Invalid(f"{_HOST_HINT} (a string)")
    text = value.strip().lower()
    if not text.isascii():
        raise Invalid(f"{_HOST_HINT}: write an internationalised name in its xn-- form")
    if text.startswith("["):
        inner, bracket, rest = text[1:].partition("]")
        if bracket and rest.startswith(":"):
            raise Invalid(_no_port(f"[{inner}]"))
        if not bracket or rest:
            raise Invalid(_HOST_HINT)
        return _ipv6(inner)
    if "/" in text:
        raise Invalid(f"{_HOST_HINT}, not a URL or a path")
    if text.count(":") > 1:
        return _ipv6(text)
    name, colon, _port = text.partition(":")
    if colon:
        raise Invalid(_no_port(name))
    if name.endswith("."):
        name = name[:-1]
    wildcard = name.startswith("*.")
    rest = name[2:] if wildcard else name
    if "*" in rest:
        raise Invalid("a '*' stands only as the whole first label, as in *.example.com")
    if rest and re.fullmatch(r"[0-9.]+", rest):
        try:
            address = ipaddress.IPv4Address(rest)
        except ValueError:
            raise Invalid(f"{_HOST_HINT}: {rest} is not an IPv4 address") from None
        if wildcard:
            raise Invalid("a wildcard (*.) goes in front of a name, not an address")
        return str(address)
    if not rest or len(rest) > 253 or not all(_DNS_LABEL.fullmatch(p) for p in rest.split(".")):
        raise Invalid(
            f"{_HOST_HINT}: labels of letters, digits and '-' (not first or last), "
            "separated by dots"
        )
    return f"*.{rest}" if wildcard else rest


def _no_port(host: str) -> str:
    return f"the port is not part of a host: routes match the Host without its port (write {host})"


def _ipv6(text: str) -> str:
    try:
        address = ipaddress.IPv6Address(text)
    except ValueError:
        raise Invalid(f"{_HOST_HINT} (an IPv6 address, such as [2001:db8::1])") from None
    if address.scope_id is not None:
        raise Invalid("must be an IPv6 address without a zone (%eth0)")
    return f"[{address.compressed}]"


def route_hosts(ck: Checker, value: Any, path: str) -> dict[str, int] | None:
    """A route's `hosts`: each normalised entry and its index in the list, in order; None
    when the key is absent (the route matches every Host) or not a list."""
    if value is None:
        return None
    if not isinstance(value, list):
        ck.add(path, "must be a list of host names, such as [shop.example.com]")
        return None
    if not value:
        ck.add(path, "must list at least one host (leave hosts out to match every Host)")
    hosts: dict[str, int] = {}
    for i, item in enumerate(value):
        try:
            host = to_route_host(item)
        except Invalid as e:
            ck.add(f"{path}[{i}]", str(e))
            continue
        if host in hosts:
            ck.add(f"{path}[{i}]", f"duplicate host {host} (same as {path}[{hosts[host]}])")
            continue
        hosts[host] = i
    return hosts


# ---------------------------------------------------------------------------------------
# path_prefix


def to_path_prefix(value: Any) -> str:
    """A route's `path_prefix`: "/" or "/a/b" (a trailing "/" removed), no query,
    fragment, empty, "." or ".." segment; compared with the path as the client sent it."""
    if not isinstance(value, str) or not value.startswith("/"):
        raise Invalid("must be a path starting with '/', such as /api")
    if not value.isascii() or not value.isprintable() or " " in value:
        raise Invalid("must be printable ASCII without spaces (percent-encode the rest: %20)")
    if "?" in value or "#" in value:
        raise Invalid("must be a path only, without a query (?) or fragment (#)")
    if "//" in value:
        raise Invalid("must not have an empty segment (//)")
    if any(s.lower().replace("%2e", ".") in (".", "..") for s in value.split("/")):
        raise Invalid("must not have a '.' or '..' segment")
    return value[:-1] if len(value) > 1 and value.endswith("/") else value


# ---------------------------------------------------------------------------------------
# segments

# Hop-by-hop headers (RFC 9110 7.6.1; http1.request.HOP_BY_HOP, which the config may not
# import): they describe one connection, not the client.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authorization",
        "proxy-authenticate",
    }
)
# RFC 6265 cookie-octet: visible ASCII but '"', ',', ';' and '\'.
_COOKIE_OCTETS = r"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*"
_COOKIE_VALUE = re.compile(rf'{_COOKIE_OCTETS}|"{_COOKIE_OCTETS}"', re.ASCII)
_TOKEN_CHARS = "letters, digits and !#$%&'*+-.^_`|~"


def _header_name(override: str | None) -> Convert:
    def convert(value: Any) -> str:
        if not isinstance(value, str) or not _TOKEN.fullmatch(value):
            raise Invalid(f"must be a header name of {_TOKEN_CHARS}")
        lower = value.lower()
        if override is not None and lower == override.lower():
            raise Invalid("is the override header (override.header), which names a pool itself")
        if lower == "host":
            raise Invalid("Host is matched by the route's hosts, not by a segment")
        if lower == "cookie":
            raise Invalid("use a cookie segment: {pool: ..., cookie: {name: ..., value: ...}}")
        if lower in _HOP_BY_HOP:
            raise Invalid("is a hop-by-hop header: it describes a connection, not a client")
        if lower == "x-splitter-shadow":
            raise Invalid("marks splitter's shadow copies: it is taken out of every request")
        return value

    return convert


def _cookie_name(value: Any) -> str:
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        raise Invalid(f"must be a cookie name of {_TOKEN_CHARS}")
    return value


def _query_name(value: Any) -> str:
    text = _text(value)
    if not text or not text.isprintable() or any(c in text for c in "&=#?"):
        raise Invalid(
            "must be a query parameter's name, without & = # or ? (its value goes in value)"
        )
    return text


def _text(value: Any) -> str:
    """A string; an integer (`value: 1` in YAML) as its decimal string."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise Invalid('must be a string (quote it: "1", "true")')


def _header_value(value: Any) -> str:
    text = _text(value)
    if not text.isascii() or not text.replace("\t", " ").isprintable() or text != text.strip():
        raise Invalid("must be a header value: printable ASCII, no spaces at either end")
    return text


def _cookie_value(value: Any) -> str:
    text = _text(value)
    if not _COOKIE_VALUE.fullmatch(text):
        raise Invalid("must be a cookie value: no spaces, quotes, commas, ';' or '\\'")
    return text


def _query_value(value: Any) -> str:
    text = _text(value)
    if not text.isprintable():
        raise Invalid("must be printable text")
    return text


_MATCHERS: dict[str, tuple[Convert, Convert]] = {
    "cookie": (_cookie_name, _cookie_value),
    "query": (_query_name, _query_value),
}


def _named(
    ck: Checker, value: Any, path: str, kind: str, override: str | None
) -> tuple[str, str | None] | None:
    """A header, cookie or query match, {name, value?}: (name, value or None)."""
    m = ck.mapping(value, path, ("name", "value"))
    if m is None:
        return None
    to_name, to_value = (
        (_header_name(override), _header_value) if kind == "header" else (_MATCHERS[kind])
    )
    if m.get("name") is None:
        ck.add(join_path(path, "name"), "is required")
        name = None
    else:
        name = ck.get(m, path, "name", None, to_name)
    match_value = ck.get(m, path, "value", None, to_value)
    return None if name is None else (name, match_value)


def _source(ck: Checker, value: Any, path: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        ck.add(path, f"must be a non-empty list of CIDRs ({CIDR_HINT})")
        return ()
    return cidr_items(ck, value, path)


def segments_section(
    ck: Checker,
    value: Any,
    path: str,
    pools: Collection[str] | None,
    pools_of: str,
    override: str | None,
) -> tuple[Segment, ...]:
    """A `segments` list, in order. `pools` are the names of the route's pools (None
    when its `pools` is unreadable: no segment's pool is judged); `pools_of` names them in
    an error ("the pools of route 'shop'"); `override` is the override header, if any."""
    if value is None:
        return ()
    if not isinstance(value, list):
        ck.add(path, f"must be a list of segments, each a pool and one of {_KINDS_TEXT}")
        return ()
    segments: list[Segment] = []
    for i, item in enumerate(value):
        item_path = f"{path}[{i}]"
        m = ck.mapping(item, item_path, ("pool", *SEGMENT_KINDS))
        if m is None:
            continue
        pool = m.get("pool")
        pool_ok = False
        if pool is None:
            ck.add(f"{item_path}.pool", "is required: the pool the segment's requests go to")
        elif not isinstance(pool, str):
            ck.add(f"{item_path}.pool", "must be a pool name")
        elif pools is not None and pool not in pools:
            known = ", ".join(pools) or "none"
            ck.add(f"{item_path}.pool", f"unknown pool {pool!r} ({pools_of} are {known})")
        else:
            pool_ok = True
        kinds = [k for k in SEGMENT_KINDS if k in m]
        if len(kinds) != 1:
            found = f"has {' and '.join(kinds)}: " if kinds else ""
            ck.add(item_path, f"{found}a segment has exactly one of {_KINDS_TEXT}")
            continue
        kind = kinds[0]
        kind_path = join_path(item_path, kind)
        if kind == "source":
            source = _source(ck, m[kind], kind_path)
            if pool_ok and source:
                segments.append(Segment(pool=str(pool), kind=kind, source=source))
            continue
        named = _named(ck, m[kind], kind_path, kind, override)
        if pool_ok and named is not None:
            segments.append(Segment(pool=str(pool), kind=kind, name=named[0], value=named[1]))
    return tuple(segments)


# ---------------------------------------------------------------------------------------
# ties


@dataclass(frozen=True, slots=True)
class Claim:
    """What one route takes, for `check_ties`: `hosts` None when it has none (every
    Host); a route whose hosts or path_prefix could not be read makes no claim."""

    path: str  # "routes[1]"
    name: str
    path_prefix: str
    hosts: dict[str, int] | None  # normalised entry -> its index in the route's hosts


def check_ties(ck: Checker, claims: list[Claim]) -> None:
    """Report each route that could take a request with the same precedence as an
    earlier one (the same path_prefix, and no hosts both or a host entry in common),
    naming the first such earlier route."""
    for j, later in enumerate(claims):
        same_prefix = [c for c in claims[:j] if c.path_prefix == later.path_prefix]
        if later.hosts is None:
            first = next((c for c in same_prefix if c.hosts is None), None)
            if first is not None:
                ck.add(
                    f"{later.path}.path_prefix",
                    f"{_name(first)} has the same path_prefix {later.path_prefix} and no hosts "
                    "either: a request could match both (give one of them hosts or another "
                    "path_prefix)",
                )
            continue
        for host, index in later.hosts.items():
            first = next((c for c in same_prefix if c.hosts and host in c.hosts), None)
            if first is not None:
                ck.add(
                    f"{later.path}.hosts[{index}]",
                    f"{_name(first)} also has {host} with path_prefix {later.path_prefix}: a "
                    "request could match both",
                )


def _name(claim: Claim) -> str:
    return f"route {claim.name!r} ({claim.path})" if claim.name else claim.path


# ---------------------------------------------------------------------------------------
# protocols


def check_protocols(ck: Checker, pools_at: list[tuple[str, tuple[Pool, ...]]]) -> None:
    """A backend (host and port) speaks one protocol wherever it is listed: the pools (at
    their path: "pools", "routes[1].pools") that list it agree on `protocol`, since its
    one health check is `GET health_check.path` or gRPC's by that protocol."""
    seen: dict[tuple[str, int], tuple[str, str]] = {}  # backend -> (its pool's path, protocol)
    for where, pools in pools_at:
        for pool in pools:
            path = join_path(where, pool.name)
            for backend in pool.backends:
                first = seen.setdefault((backend.host.lower(), backend.port), (path, pool.protocol))
                if first[1] != pool.protocol:
                    ck.add(f"{path}.protocol", f"is {pool.protocol}, but {backend.url} is also in "
                           f"{first[0]}, whose protocol is {first[1]}: a backend speaks one "
                           "protocol (and is health-checked by it)")  # fmt: skip
                    break
