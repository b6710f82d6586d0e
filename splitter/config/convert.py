"""Conversion of raw YAML (or JSON) values, each problem at its path: converters take
one value and return the typed one or raise `Invalid`; `Checker` turns that into a
`ConfigProblem` at the value's path and carries on with the default, so one pass
reports every problem."""

from __future__ import annotations

import functools
import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from splitter.config.model import (
    MAX_DURATION,
    MAX_WEIGHT,
    PROTOCOLS,
    Address,
)
from splitter.errors import ConfigProblem

# ---------------------------------------------------------------------------------------
# Validation. Converters take one raw value and return the typed one or raise Invalid;
# Checker turns that into a ConfigProblem at the value's path and carries on with the
# default, so one pass reports every problem in the file.

# A duration as text: a number and an optional unit (the admin API's schema uses it too).
DURATION_PATTERN = r"([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*(ms|s|m|h)?"
_DURATION = re.compile(DURATION_PATTERN, re.ASCII)
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([kmg]i?)?b?", re.ASCII | re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "ki": 2**10, "mi": 2**20, "gi": 2**30}
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token: header and cookie names
_POOL_NAME = re.compile(r"[A-Za-z0-9_.\-]+")
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?", re.ASCII)
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_ADDRESS_HINT = "must be host:port, e.g. 0.0.0.0:8080 or [::1]:8080"
_URL_HINT = "must be a URL such as http://127.0.0.1:5001 or https://api.internal"


T = TypeVar("T")
Convert = Callable[[Any], Any]  # raw YAML value -> typed value, or raises Invalid


class Invalid(Exception):
    """A converter's verdict on one value; becomes a ConfigProblem at that value's path."""


def join_path(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def parent_path(path: str) -> str:
    cut = path.rfind("[") if path.endswith("]") else path.rfind(".")
    return path[: max(cut, 0)]


class Checker:
    def __init__(self, lines: Mapping[str, int] | None) -> None:
        self.lines = lines or {}
        self.problems: list[ConfigProblem] = []

    def add(self, path: str, message: str) -> None:
        # A missing key has no line of its own: point at the nearest enclosing one.
        probe = path
        while probe and probe not in self.lines:
            probe = parent_path(probe)
        self.problems.append(ConfigProblem(path, message, self.lines.get(probe)))

    def has_problem(self, path: str) -> bool:
        return any(p.path == path for p in self.problems)

    def mapping(self, value: Any, path: str, allowed: tuple[str, ...]) -> dict[Any, Any] | None:
        """`value` as a mapping with only `allowed` keys (unknown ones are reported)."""
        if not isinstance(value, dict):
            self.add(path, "must be a mapping")
            return None
        for key in value:
            if key not in allowed:
                import difflib  # only on an error

                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.add(join_path(path, key), f"unknown key{hint}")
        return value

    def get(
        self, m: dict[Any, Any], path: str, key: str, default: T, convert: Callable[[Any], T]
    ) -> T:
        """m[key] converted; the default when absent or null, or (after a problem) invalid."""
        value = m.get(key)
        if value is None:
            return default
        try:
            return convert(value)
        except Invalid as e:
            self.add(join_path(path, key), str(e))
            return default


def to_float(value: Any, what: str) -> float:
    # Numeric strings are accepted so that `weight: "${W:-10}"` works after substitution.
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise Invalid(f"must be {what}")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise Invalid(f"must be {what}") from None
    if not math.isfinite(number):
        raise Invalid(f"must be a finite number (got {value!r})")
    return number


def to_weight(value: Any) -> float:
    weight = to_float(value, "a number >= 0")
    if weight < 0:
        raise Invalid("must be >= 0")
    if weight > MAX_WEIGHT:
        raise Invalid(f"must be <= {MAX_WEIGHT}")
    return weight + 0.0  # -0.0 becomes 0.0


def to_int(value: Any, minimum: int) -> int:
    number = to_float(value, f"an integer >= {minimum}")
    if not number.is_integer():
        raise Invalid(f"must be an integer >= {minimum}")
    if number < minimum:
        raise Invalid(f"must be >= {minimum}")
    return int(number)


def to_duration(value: Any, *, allow_zero: bool = False) -> float:
    hint = "a duration such as 250ms, 2s or 1m"
    if isinstance(value, str) and (match := _DURATION.fullmatch(value.strip())):
        seconds = float(match[1]) * _DURATION_UNITS[match[2]]
    elif isinstance(value, str):
        raise Invalid(f"must be {hint}")
    else:
        seconds = to_float(value, hint)  # a bare number of seconds
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise Invalid("must be >= 0" if allow_zero else "must be > 0")
    if not seconds <= MAX_DURATION:  # also inf and nan: "1" * 400 is a float overflow
        raise Invalid("must be at most 30 days (720h)")
    return seconds + 0.0  # -0.0 becomes 0.0


def as_duration(value: Any, *, allow_zero: bool = False) -> float:
    """A duration read back from state (seconds, a number): finite, within 0 (or above
    it) and MAX_DURATION, else ValueError."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"a duration must be a number of seconds, not {value!r}")
    try:
        return to_duration(value, allow_zero=allow_zero)
    except Invalid as exc:
        raise ValueError(f"duration {value!r}: {exc}") from None


def to_max_age(value: Any) -> int:
    return int(to_duration(value, allow_zero=True))


def to_size(value: Any) -> int:
    hint = "must be a size in bytes such as 1048576, 512KiB or 10MB"
    if isinstance(value, bool):
        raise Invalid(hint)
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (match := _SIZE.fullmatch(value.strip())):
        size = int(float(match[1]) * _SIZE_UNITS[(match[2] or "").lower()])
    else:
        raise Invalid(hint)
    if size < 0:
        raise Invalid("must be >= 0")
    return size


def to_str(value: Any) -> str:
    # No str() of numbers: YAML reads `token: 0123` as the int 83, so quoting is required.
    if not isinstance(value, str):
        raise Invalid("must be a string (quote it)")
    return value


def to_workers(value: Any) -> int:
    """A number of worker processes, or "auto": one per core."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return os.cpu_count() or 1
    try:
        workers = to_int(value, 1)
    except Invalid:
        raise Invalid('must be an integer >= 1 or "auto"') from None
    if workers > 256:
        raise Invalid("must be at most 256")
    return workers


def to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"  # "${ACCESS_LOG:-true}" after substitution
    raise Invalid("must be true or false")


def to_token(value: Any) -> str:
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        raise Invalid("must be a name of letters, digits and !#$%&'*+-.^_`|~")
    return value


def to_url_path(value: Any) -> str:
    path = to_str(value)
    if not path.startswith("/") or not path.isprintable() or " " in path:
        raise Invalid("must be a path starting with '/'")
    return path


def _split_host_port(text: str, hint: str) -> tuple[str, str | None]:
    """ "host:port", "host", "[v6]:port" or "[v6]" -> (host without brackets, port text)."""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise Invalid(hint) from None
        if not bracket or (rest and not rest.startswith(":")):
            raise Invalid(hint)
        return host, rest[1:] if rest else None
    if text.count(":") > 1:
        raise Invalid(f"{hint} (an IPv6 address goes in brackets)")
    host, colon, port = text.partition(":")
    if re.fullmatch(r"[0-9.]+", host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise Invalid(hint) from None
    elif not _HOST_NAME.fullmatch(host):
        raise Invalid(hint)
    return host, port if colon else None


def to_port(text: str, minimum: int, hint: str) -> int:
    if not (text.isascii() and text.isdigit()) or not minimum <= int(text) <= 65535:
        raise Invalid(f"{hint} (port {minimum}..65535)")
    return int(text)


def to_address(value: Any) -> Address:
    if not isinstance(value, str):
        raise Invalid(_ADDRESS_HINT)
    host, port = _split_host_port(value.strip(), _ADDRESS_HINT)
    if port is None:
        raise Invalid(f"{_ADDRESS_HINT} (the port is missing)")
    return Address(host, to_port(port, 0, _ADDRESS_HINT))  # port 0: the OS picks one


def to_backend_url(value: Any) -> tuple[str, int, bool]:
    """http(s)://host[:port][/] -> (host, port, https); the proxy sends the request's own
    path."""
    if not isinstance(value, str):
        raise Invalid(f"{_URL_HINT}, or a mapping {{url: ..., weight: N}}")
    scheme, sep, rest = value.partition("://")
    https = scheme.lower() == "https"
    if not (https or scheme.lower() == "http") or not sep:
        raise Invalid(_URL_HINT)
    rest = rest.removesuffix("/")
    if any(c in rest for c in "/?#@"):
        raise Invalid(f"must be {scheme.lower()}://host[:port] only: no path, query or user info")
    host, port = _split_host_port(rest, _URL_HINT)
    default = 443 if https else 80
    return host, default if port is None else to_port(port, 1, _URL_HINT), https


def to_protocol(value: Any) -> str:
    """A pool's `protocol`. `h2` is not one: an https:// backend picks it by ALPN."""
    if value not in PROTOCOLS:
        hint = " (an https:// backend negotiates h2 by ALPN)" if value in ("h2", "http2") else ""
        raise Invalid(f"must be http1 or h2c{hint}")
    return str(value)


CIDR_HINT = "a CIDR such as 10.0.0.0/8 or 2001:db8::/32, or one address"


def to_cidr(value: Any) -> str:
    """A CIDR, or one address as its /32 or /128, normalised ("10.0.0.0/8"); an
    IPv4-mapped IPv6 network becomes its IPv4 network."""
    if not isinstance(value, str) or not value.strip().isascii():
        raise Invalid(f"not a CIDR: must be {CIDR_HINT}")
    text = value.strip()
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError:
        try:  # say what was meant when only host bits are wrong (10.0.0.1/8)
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise Invalid(f"not a CIDR: must be {CIDR_HINT}") from None
        raise Invalid(f"not a CIDR: {text} has host bits set (did you mean {loose}?)") from None
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            return str(ipaddress.IPv4Network((mapped, network.prefixlen - 96)))
    return str(network)


# ---------------------------------------------------------------------------------------
# Rollouts: the config section, and a rollout's request (the same keys, the same checks)


# The bounds of the rollout judge's settings (config and API alike; the admin API's
# schema reads them here).
MIN_CONFIDENCE = 0.5  # up to, not including, 1
MAX_RATIO = 1000  # max_error_ratio and max_slow_ratio: from 1 to this
MAX_PER_ADDRESS = 1_000_000
ON_INCONCLUSIVE = ("pause", "promote", "rollback")


def to_fraction(value: Any) -> float:
    number = to_float(value, "a number between 0 and 1")
    if not 0 < number < 1:
        raise Invalid("must be between 0 and 1 (exclusive)")
    return number


def to_confidence(value: Any) -> float:
    number = to_float(value, "a number such as 0.99")
    if not MIN_CONFIDENCE <= number < 1:
        raise Invalid(f"must be at least {MIN_CONFIDENCE} and below 1")
    return number


def to_ratio(value: Any) -> float:
    number = to_float(value, "a number >= 1")
    if not 1 <= number <= MAX_RATIO:
        raise Invalid(f"must be from 1 to {MAX_RATIO}")
    return number


def to_inconclusive(value: Any) -> str:
    if value not in ON_INCONCLUSIVE:
        raise Invalid("must be pause, promote or rollback")
    return str(value)


def to_per_address(value: Any) -> int:
    n = to_int(value, 1)
    if n > MAX_PER_ADDRESS:
        raise Invalid(f"must be at most {MAX_PER_ADDRESS}")
    return n


def to_hook_url(value: Any) -> str:
    url = to_str(value)
    scheme, sep, rest = url.partition("://")
    if scheme.lower() not in ("http", "https") or not sep or not rest or url != url.strip():
        raise Invalid("must be an http:// or https:// URL")
    if any(ord(c) < 0x21 or ord(c) > 0x7E for c in url):
        raise Invalid("must be a URL of printable ASCII")
    return url


DURATION_GT0 = functools.partial(to_duration, allow_zero=False)
DURATION_GE0 = functools.partial(to_duration, allow_zero=True)


def cidr_items(ck: Checker, items: list[Any], path: str) -> tuple[str, ...]:
    """The CIDRs of a list, each normalised (`to_cidr`), duplicates dropped; each one that
    is not a CIDR is a problem at its index."""
    out: list[str] = []
    for i, item in enumerate(items):
        try:
            network = to_cidr(item)
        except Invalid as e:
            ck.add(f"{path}[{i}]", str(e))
            continue
        if network not in out:
            out.append(network)
    return tuple(out)
