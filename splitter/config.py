"""The config file: YAML in, frozen dataclasses out.

Rules (contract section 2):

- `load(path)` reads the file and calls `parse`; `parse` is pure (mapping in, `Config` out)
  and collects *every* problem before raising one `ConfigError`, each problem naming its
  YAML path (`pools.canary.weight`) and, when the mapping came from a file, its line.
- `${VAR}` and `${VAR:-default}` are replaced in scalar values after YAML parsing, so a
  value holding `:` or `#` is safe; `${VAR}` with VAR unset and no default is an error.
- Durations are a number with a unit (`250ms`, `1.5s`, `2m`, `1h`) or bare seconds; they
  become float seconds.
- Unknown keys and duplicate keys are errors. Every key but `listen` and `pools` has a
  default; an explicit null means the default too (for `sticky` and `override`: off).
- Numeric fields also take numeric strings, so `weight: "${CANARY_WEIGHT:-0}"` works.
- `load` bounds its work before it builds anything: a file of at most 1 MiB, at most
  100,000 YAML nodes once aliases are expanded (an alias bomb is refused, not expanded),
  no integer of more than 100 characters.

Nothing here imports asyncio or aiohttp: the request path and the admin API only ever see
the dataclasses below.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import yaml

from splitter.errors import ConfigError, ConfigProblem

__all__ = [
    "ADMIN_COOKIE",
    "MAX_DURATION",
    "MAX_WEIGHT",
    "MIN_TOKEN_LENGTH",
    "Address",
    "Admin",
    "Backend",
    "Config",
    "ConfigError",
    "ConfigProblem",
    "HealthCheck",
    "Limits",
    "MetricsListener",
    "Override",
    "Pool",
    "Shutdown",
    "Sticky",
    "Store",
    "Timeouts",
    "is_loopback_host",
    "load",
    "parse",
]


# Weights are finite numbers from 0 to a million (contract 2), in the file as in the API:
# bounded, a weight stays exact as a float, an int in JSON, and a share of a sum.
MAX_WEIGHT = 1_000_000
# Durations anywhere (config, API, state) are at most 30 days (contract 5): a longer one
# is a typo, and an infinite one breaks every clock sum it enters.
MAX_DURATION = 30 * 86400.0
# A token short enough to guess is no protection (contract 5).
MIN_TOKEN_LENGTH = 16
# The dashboard's session cookie (contract 9): never forwarded to a backend (contract 5).
ADMIN_COOKIE = "splitter_admin"


@dataclass(frozen=True, slots=True)
class Address:
    """A host:port to listen on. `host` has no brackets ("::1", "0.0.0.0")."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Backend:
    url: str  # exactly as written in the config (the metrics label)
    host: str  # from the URL, no brackets
    port: int  # from the URL; 80 when absent
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class Pool:
    name: str
    weight: float
    backends: tuple[Backend, ...]


@dataclass(frozen=True, slots=True)
class Admin:
    listen: Address = Address("127.0.0.1", 9901)
    token: str = ""


@dataclass(frozen=True, slots=True)
class MetricsListener:
    """The optional `metrics` section: a third listener serving /metrics, /healthz and
    /readyz only, on any address and without a token (Prometheus, kubelet probes)."""

    listen: Address | None = None  # None: no such listener


@dataclass(frozen=True, slots=True)
class Sticky:
    cookie: str = "splitter"
    max_age: int = 86400
    secret: str = ""  # empty: generated once and kept in the state file


@dataclass(frozen=True, slots=True)
class Override:
    header: str = "X-Splitter-Pool"


@dataclass(frozen=True, slots=True)
class HealthCheck:
    path: str = "/healthz"
    interval: float = 2.0
    timeout: float = 1.0
    healthy_threshold: int = 2
    unhealthy_threshold: int = 2


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 2.0
    read: float = 60.0


@dataclass(frozen=True, slots=True)
class Limits:
    max_body: int | None = None  # bytes; None is unlimited
    header_timeout: float = 10.0
    body_idle_timeout: float = 30.0
    keepalive_timeout: float = 75.0
    max_request_line: int = 8192
    max_header_bytes: int = 65536
    max_header_count: int = 100
    upstream_idle_timeout: float = 4.0  # close idle backend connections before they do
    upstream_max_idle: int = 1024  # idle keep-alive connections kept per backend


@dataclass(frozen=True, slots=True)
class Shutdown:
    accept_grace: float = 0.0
    grace: float = 10.0


@dataclass(frozen=True, slots=True)
class Analysis:
    """How the rollout judge decides (contract section 8)."""

    confidence: float = 0.99
    max_error_ratio: float = 1.5
    min_error_rate: float = 0.005
    max_slow_ratio: float = 1.25
    latency_floor: float = 0.010  # seconds
    warmup: float = 30.0  # seconds after a weight change whose requests are not judged
    # Client-seconds one client address adds per second and pool. Applied as requests are
    # recorded, in every process: set in the config only, not per rollout.
    max_per_address: int = 100


ROLLOUT_EVENTS = ("started", "step", "paused", "resumed", "promoted", "rolled_back", "cancelled")


@dataclass(frozen=True, slots=True)
class Webhook:
    url: str
    events: tuple[str, ...] = ROLLOUT_EVENTS


@dataclass(frozen=True, slots=True)
class Rollouts:
    """Defaults for automated rollouts; a rollout's request may override them."""

    hold: float = 60.0  # least time at a step
    max: float = 600.0  # most time at a step before the verdict is "inconclusive"
    on_inconclusive: str = "pause"  # pause | promote | rollback
    analysis: Analysis = field(default_factory=Analysis)
    webhooks: tuple[Webhook, ...] = ()


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a rollout: a weight for the candidate (percent), or a manual gate."""

    weight: float | None  # None: a manual gate ({"pause": true})
    hold: float
    max: float


@dataclass(frozen=True, slots=True)
class RolloutPlan:
    """A rollout as asked for (POST /api/v1/rollout), validated, with defaults filled in.

    For `canary`, `steps` are the steps; for `bluegreen`, step 0 is the preview (weight 0,
    its hold and max) and step 1 the `keep` window after the switch (weight 100).
    """

    pool: str
    strategy: str  # canary | bluegreen
    steps: tuple[Step, ...]
    analysis: Analysis
    on_inconclusive: str
    webhooks: tuple[Webhook, ...]
    gates: tuple[str, ...]
    auto_promote: bool = False
    keep: float = 600.0


@dataclass(frozen=True, slots=True)
class Store:
    """Shared state for several replicas (contract section 10): a Redis URL, split up.

    The password is never shown: `__repr__` and `redacted` leave it out."""

    url: str  # as written (after ${VAR}); holds the password, if any: never log it
    tls: bool  # rediss://
    host: str
    port: int
    db: int
    username: str | None
    password: str | None
    prefix: str = "splitter"

    def __repr__(self) -> str:
        return f"Store(url={self.redacted!r}, prefix={self.prefix!r})"

    @property
    def redacted(self) -> str:
        """The URL for logs: the password (and user name) replaced by `***`."""
        scheme = "rediss" if self.tls else "redis"
        who = "***@" if self.password is not None or self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{who}{host}:{self.port}/{self.db}"


@dataclass(frozen=True, slots=True)
class Config:
    listen: Address
    pools: tuple[Pool, ...]
    admin: Admin = field(default_factory=Admin)
    metrics: MetricsListener = field(default_factory=MetricsListener)
    sticky: Sticky | None = None
    override: Override | None = None
    health_check: HealthCheck = field(default_factory=HealthCheck)
    timeouts: Timeouts = field(default_factory=Timeouts)
    state_file: str = "./splitter-state.json"
    limits: Limits = field(default_factory=Limits)
    shutdown: Shutdown = field(default_factory=Shutdown)
    access_log: bool = True
    workers: int = 1  # processes serving the proxy listener (SO_REUSEPORT)
    rollouts: Rollouts = field(default_factory=Rollouts)
    store: Store | None = None  # None: one process, the state file alone
    # Contract 8: peers whose X-Forwarded-For names the client (CIDRs, as written but
    # normalised: "10.0.0.0/8", "2001:db8::/32"); and whether every connection to the proxy
    # listener starts with a PROXY protocol header (v1 or v2) naming the client.
    trusted_proxies: tuple[str, ...] = ()
    proxy_protocol: bool = False

    def weights(self) -> dict[str, float]:
        return {p.name: p.weight for p in self.pools}

    def pool(self, name: str) -> Pool | None:
        for p in self.pools:
            if p.name == name:
                return p
        return None


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost are loopback; everything else is not."""
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # any other name may resolve anywhere
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


# ---------------------------------------------------------------------------------------
# Validation. Converters take one raw value and return the typed one or raise _Invalid;
# _Checker turns that into a ConfigProblem at the value's path and carries on with the
# default, so one pass reports every problem in the file.

_DURATION = re.compile(r"([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*(ms|s|m|h)?", re.ASCII)
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([kmg]i?)?b?", re.ASCII | re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "ki": 2**10, "mi": 2**20, "gi": 2**30}
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token: header and cookie names
_POOL_NAME = re.compile(r"[A-Za-z0-9_.\-]+")
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?", re.ASCII)
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_ADDRESS_HINT = "must be host:port, e.g. 0.0.0.0:8080 or [::1]:8080"
_URL_HINT = "must be a URL such as http://127.0.0.1:5001"


T = TypeVar("T")
_Convert = Callable[[Any], Any]  # raw YAML value -> typed value, or raises _Invalid


class _Invalid(Exception):
    """A converter's verdict on one value; becomes a ConfigProblem at that value's path."""


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _parent(path: str) -> str:
    cut = path.rfind("[") if path.endswith("]") else path.rfind(".")
    return path[: max(cut, 0)]


class _Checker:
    def __init__(self, lines: Mapping[str, int] | None) -> None:
        self.lines = lines or {}
        self.problems: list[ConfigProblem] = []

    def add(self, path: str, message: str) -> None:
        # A missing key has no line of its own: point at the nearest enclosing one.
        probe = path
        while probe and probe not in self.lines:
            probe = _parent(probe)
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
                self.add(_join(path, key), f"unknown key{hint}")
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
        except _Invalid as e:
            self.add(_join(path, key), str(e))
            return default


def _as_float(value: Any, what: str) -> float:
    # Numeric strings are accepted so that `weight: "${W:-10}"` works after substitution.
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _Invalid(f"must be {what}")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise _Invalid(f"must be {what}") from None
    if not math.isfinite(number):
        raise _Invalid(f"must be a finite number (got {value!r})")
    return number


def _as_weight(value: Any) -> float:
    weight = _as_float(value, "a number >= 0")
    if weight < 0:
        raise _Invalid("must be >= 0")
    if weight > MAX_WEIGHT:
        raise _Invalid(f"must be <= {MAX_WEIGHT}")
    return weight + 0.0  # -0.0 becomes 0.0


def _as_int(value: Any, minimum: int) -> int:
    number = _as_float(value, f"an integer >= {minimum}")
    if not number.is_integer():
        raise _Invalid(f"must be an integer >= {minimum}")
    if number < minimum:
        raise _Invalid(f"must be >= {minimum}")
    return int(number)


def _as_duration(value: Any, *, allow_zero: bool = False) -> float:
    hint = "a duration such as 250ms, 2s or 1m"
    if isinstance(value, str) and (match := _DURATION.fullmatch(value.strip())):
        seconds = float(match[1]) * _DURATION_UNITS[match[2]]
    elif isinstance(value, str):
        raise _Invalid(f"must be {hint}")
    else:
        seconds = _as_float(value, hint)  # a bare number of seconds
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise _Invalid("must be >= 0" if allow_zero else "must be > 0")
    if not seconds <= MAX_DURATION:  # also inf and nan: "1" * 400 is a float overflow
        raise _Invalid("must be at most 30 days (720h)")
    return seconds + 0.0  # -0.0 becomes 0.0


def as_duration(value: Any, *, allow_zero: bool = False) -> float:
    """A duration read back from state (seconds, a number): finite, within 0 (or above
    it) and MAX_DURATION, else ValueError."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"a duration must be a number of seconds, not {value!r}")
    try:
        return _as_duration(value, allow_zero=allow_zero)
    except _Invalid as exc:
        raise ValueError(f"duration {value!r}: {exc}") from None


def _as_max_age(value: Any) -> int:
    return int(_as_duration(value, allow_zero=True))


def _as_size(value: Any) -> int:
    hint = "must be a size in bytes such as 1048576, 512KiB or 10MB"
    if isinstance(value, bool):
        raise _Invalid(hint)
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (match := _SIZE.fullmatch(value.strip())):
        size = int(float(match[1]) * _SIZE_UNITS[(match[2] or "").lower()])
    else:
        raise _Invalid(hint)
    if size < 0:
        raise _Invalid("must be >= 0")
    return size


def _as_str(value: Any) -> str:
    # No str() of numbers: YAML reads `token: 0123` as the int 83, so quoting is required.
    if not isinstance(value, str):
        raise _Invalid("must be a string (quote it)")
    return value


def _as_workers(value: Any) -> int:
    """A number of worker processes, or "auto": one per core."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return os.cpu_count() or 1
    try:
        workers = _as_int(value, 1)
    except _Invalid:
        raise _Invalid('must be an integer >= 1 or "auto"') from None
    if workers > 256:
        raise _Invalid("must be at most 256")
    return workers


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"  # "${ACCESS_LOG:-true}" after substitution
    raise _Invalid("must be true or false")


def _as_token(value: Any) -> str:
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        raise _Invalid("must be a name of letters, digits and !#$%&'*+-.^_`|~")
    return value


def _as_url_path(value: Any) -> str:
    path = _as_str(value)
    if not path.startswith("/") or not path.isprintable() or " " in path:
        raise _Invalid("must be a path starting with '/'")
    return path


def _split_host_port(text: str, hint: str) -> tuple[str, str | None]:
    """ "host:port", "host", "[v6]:port" or "[v6]" -> (host without brackets, port text)."""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise _Invalid(hint) from None
        if not bracket or (rest and not rest.startswith(":")):
            raise _Invalid(hint)
        return host, rest[1:] if rest else None
    if text.count(":") > 1:
        raise _Invalid(f"{hint} (an IPv6 address goes in brackets)")
    host, colon, port = text.partition(":")
    if re.fullmatch(r"[0-9.]+", host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise _Invalid(hint) from None
    elif not _HOST_NAME.fullmatch(host):
        raise _Invalid(hint)
    return host, port if colon else None


def _as_port(text: str, minimum: int, hint: str) -> int:
    if not (text.isascii() and text.isdigit()) or not minimum <= int(text) <= 65535:
        raise _Invalid(f"{hint} (port {minimum}..65535)")
    return int(text)


def _as_address(value: Any) -> Address:
    if not isinstance(value, str):
        raise _Invalid(_ADDRESS_HINT)
    host, port = _split_host_port(value.strip(), _ADDRESS_HINT)
    if port is None:
        raise _Invalid(f"{_ADDRESS_HINT} (the port is missing)")
    return Address(host, _as_port(port, 0, _ADDRESS_HINT))  # port 0: the OS picks one


def _as_backend_url(value: Any) -> tuple[str, int]:
    """http://host[:port][/] -> (host, port); the proxy sends the request's own path."""
    if not isinstance(value, str):
        raise _Invalid(f"{_URL_HINT}, or a mapping {{url: ..., weight: N}}")
    scheme, sep, rest = value.partition("://")
    if scheme.lower() == "https" and sep:
        raise _Invalid("https backends are not supported")
    if scheme.lower() != "http" or not sep:
        raise _Invalid(_URL_HINT)
    rest = rest.removesuffix("/")
    if any(c in rest for c in "/?#@"):
        raise _Invalid("must be http://host[:port] only: no path, query or user info")
    host, port = _split_host_port(rest, _URL_HINT)
    return host, 80 if port is None else _as_port(port, 1, _URL_HINT)


# ---------------------------------------------------------------------------------------
# Sections


def _substitute(ck: _Checker, value: Any, path: str, env: Mapping[str, str]) -> Any:
    """Replace ${VAR} and ${VAR:-default} in every string value (keys are left alone)."""
    if isinstance(value, dict):
        return {k: _substitute(ck, v, _join(path, k), env) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(ck, v, f"{path}[{i}]", env) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        name, default = match[1], match[2]
        found = env.get(name)
        if default is not None and not found:  # as in the shell, an empty VAR takes it too
            return default
        if found is None:
            ck.add(path, f"environment variable {name} is not set")
            return ""
        return found

    if "${" in _ENV_REF.sub("", value):  # a typo such as ${VAR:default} must not pass as text
        ck.add(path, "unsupported ${...}: use ${VAR} or ${VAR:-default}")
    return _ENV_REF.sub(replace, value)


def _backends(ck: _Checker, value: Any, path: str) -> tuple[Backend, ...]:
    if value is None:
        ck.add(path, "is required: a list of backend URLs")
        return ()
    if not isinstance(value, list):
        ck.add(path, "must be a list")
        return ()
    if not value:
        ck.add(path, "must list at least one backend")
    backends: list[Backend] = []
    seen: dict[tuple[str, int], int] = {}
    for i, item in enumerate(value):
        item_path = f"{path}[{i}]"
        url_path, url, weight = item_path, item, 1.0
        if isinstance(item, dict):
            m = ck.mapping(item, item_path, ("url", "weight")) or {}
            url_path, url = f"{item_path}.url", m.get("url")
            weight = ck.get(m, item_path, "weight", 1.0, _as_weight)
            if url is None:
                ck.add(url_path, "is required")
                continue
        try:
            host, port = _as_backend_url(url)
        except _Invalid as e:
            ck.add(url_path, str(e))
            continue
        key = (host.lower(), port)
        if key in seen:
            ck.add(url_path, f"duplicate backend (same as {path}[{seen[key]}])")
            continue
        seen[key] = i
        backends.append(Backend(url=url, host=host, port=port, weight=weight))
    return tuple(backends)


def _pools(ck: _Checker, value: Any) -> tuple[Pool, ...]:
    if value is None:
        ck.add("pools", "is required: at least one pool with its backends")
        return ()
    if not isinstance(value, dict):
        ck.add("pools", "must be a mapping of pool name to {weight, backends}")
        return ()
    if not value:
        ck.add("pools", "must define at least one pool")
        return ()
    pools: list[Pool] = []
    all_weights_known = True
    for name, spec in value.items():
        path = _join("pools", name)
        if not isinstance(name, str) or not _POOL_NAME.fullmatch(name):
            ck.add(path, "pool name must be letters, digits, '_', '.' or '-'")
        elif name == "none":  # the metrics' label for requests refused before a pool
            ck.add(path, "'none' is reserved; name the pool otherwise")
        m = ck.mapping(spec, path, ("weight", "backends"))
        if m is None:
            all_weights_known = False
            continue
        weight = ck.get(m, path, "weight", 0.0, _as_weight)
        all_weights_known = all_weights_known and not ck.has_problem(f"{path}.weight")
        backends = _backends(ck, m.get("backends"), f"{path}.backends")
        pools.append(Pool(name=str(name), weight=weight, backends=backends))
    # Only judged when every weight was readable, to avoid a second error for the same typo.
    if all_weights_known and not any(p.weight > 0 for p in pools):
        ck.add("pools", "at least one pool must have a weight > 0")
    return tuple(pools)


def _admin(ck: _Checker, value: Any) -> Admin:
    admin = _section(ck, value, "admin", Admin, {"listen": _as_address, "token": _as_str})
    # The admin API can change weights: open to the network, it must ask for a token.
    if not admin.token and not ck.has_problem("admin.listen") \
            and not is_loopback_host(admin.listen.host):  # fmt: skip
        ck.add("admin.token", "required when admin.listen is not a loopback address")
    if admin.token and len(admin.token) < MIN_TOKEN_LENGTH:
        ck.add("admin.token", f"must be at least {MIN_TOKEN_LENGTH} characters")
    return admin


_CIDR_HINT = "a CIDR such as 10.0.0.0/8 or 2001:db8::/32, or one address"


def _trusted_proxies(ck: _Checker, value: Any) -> tuple[str, ...]:
    """`trusted_proxies`: a list of CIDRs, each normalised; an IPv4-mapped IPv6 network
    becomes its IPv4 network (a client's address is compared in its IPv4 form)."""
    if value is None:
        return ()
    if not isinstance(value, list):
        ck.add("trusted_proxies", f"must be a list of CIDRs ({_CIDR_HINT})")
        return ()
    out: list[str] = []
    for i, item in enumerate(value):
        try:
            network = _as_cidr(item)
        except _Invalid as e:
            ck.add(f"trusted_proxies[{i}]", str(e))
            continue
        if network not in out:
            out.append(network)
    return tuple(out)


def _as_cidr(value: Any) -> str:
    if not isinstance(value, str) or not value.strip().isascii():
        raise _Invalid(f"not a CIDR: must be {_CIDR_HINT}")
    text = value.strip()
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError:
        try:  # say what was meant when only host bits are wrong (10.0.0.1/8)
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise _Invalid(f"not a CIDR: must be {_CIDR_HINT}") from None
        raise _Invalid(f"not a CIDR: {text} has host bits set (did you mean {loose}?)") from None
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            return str(ipaddress.IPv4Network((mapped, network.prefixlen - 96)))
    return str(network)


_STORE_HINT = "must be redis://[[user]:password@]host[:port][/db], or rediss:// for TLS"
_STORE_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}", re.ASCII)


def _store(ck: _Checker, value: Any) -> Store | None:
    """The `store` section; None when absent. The URL is never echoed in an error: it may
    hold a password."""
    if value is None:
        return None
    m = ck.mapping(value, "store", ("url", "prefix"))
    if m is None:
        return None
    if m.get("url") is None:
        ck.add("store.url", "is required: " + _STORE_HINT[5:])
        return None
    prefix = ck.get(m, "store", "prefix", "splitter", _as_store_prefix)
    try:
        return _as_store_url(m["url"], prefix)
    except _Invalid as e:
        ck.add("store.url", str(e))
        return None


def _as_store_prefix(value: Any) -> str:
    if not isinstance(value, str) or not _STORE_PREFIX.fullmatch(value):
        raise _Invalid("must be a short name: up to 64 letters, digits and _ . : -")
    return value


def _as_store_url(value: Any, prefix: str) -> Store:
    """redis://[[user]:password@]host[:port][/db]; the user information is taken as
    written (no percent-decoding), so that `${REDIS_PASSWORD}` works whatever it holds."""
    if not isinstance(value, str):
        raise _Invalid(_STORE_HINT)
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() not in ("redis", "rediss"):
        raise _Invalid(_STORE_HINT)
    userinfo, at, rest = rest.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = user or None
        password = secret if colon else None
        if not colon:  # redis://password@host is the classic form (no user)
            username, password = None, user or None
    if any(c in rest for c in "?#"):
        raise _Invalid(f"{_STORE_HINT}: no query or fragment")
    hostport, slash, db_text = rest.partition("/")
    db = 0
    if slash and db_text:
        if not (db_text.isascii() and db_text.isdigit()) or int(db_text) > 1_000_000:
            raise _Invalid(f"{_STORE_HINT}: the db is a number")
        db = int(db_text)
    host, port = _split_host_port(hostport, _STORE_HINT) if hostport else ("", None)
    if not host:
        raise _Invalid(f"{_STORE_HINT}: the host is missing")
    return Store(
        url=value,
        tls=scheme.lower() == "rediss",
        host=host,
        port=6379 if port is None else _as_port(port, 1, _STORE_HINT),
        db=db,
        username=username,
        password=password,
        prefix=prefix,
    )


def _section(
    ck: _Checker, value: Any, path: str, cls: Callable[..., T], fields: dict[str, _Convert]
) -> T:
    """A section whose keys are all optional: absent, null or invalid means the default."""
    m = {} if value is None else (ck.mapping(value, path, tuple(fields)) or {})
    defaults = cls()
    return cls(**{k: ck.get(m, path, k, getattr(defaults, k), f) for k, f in fields.items()})


_DURATION_GT0 = functools.partial(_as_duration, allow_zero=False)
_DURATION_GE0 = functools.partial(_as_duration, allow_zero=True)
_INT_GE1 = functools.partial(_as_int, minimum=1)
_SECTIONS: dict[str, tuple[Callable[..., Any], dict[str, _Convert]]] = {
    "sticky": (Sticky, {"cookie": _as_token, "max_age": _as_max_age, "secret": _as_str}),
    "override": (Override, {"header": _as_token}),
    "metrics": (MetricsListener, {"listen": _as_address}),
    "health_check": (HealthCheck, {
        "path": _as_url_path, "interval": _DURATION_GT0, "timeout": _DURATION_GT0,
        "healthy_threshold": _INT_GE1, "unhealthy_threshold": _INT_GE1,
    }),
    "timeouts": (Timeouts, {"connect": _DURATION_GT0, "read": _DURATION_GT0}),
    "limits": (Limits, {
        "max_body": _as_size, "header_timeout": _DURATION_GT0, "body_idle_timeout": _DURATION_GT0,
        "keepalive_timeout": _DURATION_GT0, "upstream_idle_timeout": _DURATION_GT0,
        "upstream_max_idle": _INT_GE1,
        "max_request_line": _INT_GE1, "max_header_bytes": _INT_GE1, "max_header_count": _INT_GE1,
    }),
    "shutdown": (Shutdown, {"accept_grace": _DURATION_GE0, "grace": _DURATION_GE0}),
}  # fmt: skip


def _in_file_order(problems: list[ConfigProblem]) -> list[ConfigProblem]:
    # Stable: problems without a line (a missing top-level key) come first, in found order.
    return sorted(problems, key=lambda p: p.line or 0)


def parse(
    data: Any, lines: Mapping[str, int] | None = None, env: Mapping[str, str] | None = None
) -> Config:
    """Validate a parsed YAML document into a Config or raise ConfigError listing every problem.

    `lines` maps a YAML path ("pools.canary.weight") to its 1-based line; `env` defaults to
    os.environ.
    """
    ck = _Checker(lines)
    if not isinstance(data, dict):
        ck.add("", "must be a mapping (listen: ..., pools: ...)")
        raise ConfigError(ck.problems)
    data = _substitute(ck, data, "", os.environ if env is None else env)
    top = (
        "listen", "admin", "pools", "state_file", "access_log", "workers", "rollouts", "store",
        "trusted_proxies", "proxy_protocol", *_SECTIONS,
    )  # fmt: skip
    ck.mapping(data, "", top)
    if data.get("listen") is None:
        ck.add("listen", "is required (host:port of the proxy, e.g. 0.0.0.0:8080)")
    d = Config(listen=Address("", 0), pools=())
    listen = ck.get(data, "", "listen", d.listen, _as_address)
    admin, pools = _admin(ck, data.get("admin")), _pools(ck, data.get("pools"))
    sections = {
        name: _section(ck, data.get(name), name, cls, fields)
        for name, (cls, fields) in _SECTIONS.items()
        # sticky and override are off when absent or null; the others take their defaults
        if data.get(name) is not None or name not in ("sticky", "override")
    }
    config = Config(
        listen=listen,
        admin=admin,
        pools=pools,
        state_file=ck.get(data, "", "state_file", d.state_file, _as_str),
        access_log=ck.get(data, "", "access_log", d.access_log, _as_bool),
        workers=ck.get(data, "", "workers", d.workers, _as_workers),
        rollouts=_rollouts(ck, data.get("rollouts"), "rollouts"),
        store=_store(ck, data.get("store")),
        trusted_proxies=_trusted_proxies(ck, data.get("trusted_proxies")),
        proxy_protocol=ck.get(data, "", "proxy_protocol", d.proxy_protocol, _as_bool),
        **sections,
    )
    if ck.problems:
        raise ConfigError(_in_file_order(ck.problems))
    return config


# ---------------------------------------------------------------------------------------
# Rollouts: the config section, and a rollout's request (the same keys, the same checks)


def _as_fraction(value: Any) -> float:
    number = _as_float(value, "a number between 0 and 1")
    if not 0 < number < 1:
        raise _Invalid("must be between 0 and 1 (exclusive)")
    return number


def _as_confidence(value: Any) -> float:
    number = _as_float(value, "a number such as 0.99")
    if not 0.5 <= number < 1:
        raise _Invalid("must be at least 0.5 and below 1")
    return number


def _as_ratio(value: Any) -> float:
    number = _as_float(value, "a number >= 1")
    if not 1 <= number <= 1000:
        raise _Invalid("must be from 1 to 1000")
    return number


def _as_inconclusive(value: Any) -> str:
    if value not in ("pause", "promote", "rollback"):
        raise _Invalid("must be pause, promote or rollback")
    return str(value)


def _as_per_address(value: Any) -> int:
    n = _as_int(value, 1)
    if n > 1_000_000:
        raise _Invalid("must be at most 1000000")
    return n


def _as_hook_url(value: Any) -> str:
    url = _as_str(value)
    scheme, sep, rest = url.partition("://")
    if scheme.lower() not in ("http", "https") or not sep or not rest or url != url.strip():
        raise _Invalid("must be an http:// or https:// URL")
    if any(ord(c) < 0x21 or ord(c) > 0x7E for c in url):
        raise _Invalid("must be a URL of printable ASCII")
    return url


_ANALYSIS_FIELDS: dict[str, _Convert] = {
    "confidence": _as_confidence,
    "max_error_ratio": _as_ratio,
    "min_error_rate": _as_fraction,
    "max_slow_ratio": _as_ratio,
    "latency_floor": _DURATION_GE0,
    "warmup": _DURATION_GE0,
    "max_per_address": _as_per_address,
}
_CONFIG_ONLY = ("max_per_address",)


def _analysis(
    ck: _Checker, value: Any, path: str, base: Analysis, in_config: bool = True
) -> Analysis:
    if value is None:
        return base
    m = ck.mapping(value, path, tuple(_ANALYSIS_FIELDS)) or {}
    if not in_config:
        for key in _CONFIG_ONLY:
            if key in m:
                why = f"is set in the config (rollouts.analysis.{key}): it applies as requests"
                ck.add(_join(path, key), why + " are recorded")
                m = {k: v for k, v in m.items() if k != key}
    return Analysis(
        **{k: ck.get(m, path, k, getattr(base, k), f) for k, f in _ANALYSIS_FIELDS.items()}
    )


def _webhooks(ck: _Checker, value: Any, path: str) -> tuple[Webhook, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        ck.add(path, "must be a list of {url, events}")
        return ()
    hooks = []
    for i, item in enumerate(value):
        item_path = f"{path}[{i}]"
        m = ck.mapping(item, item_path, ("url", "events"))
        if m is None:
            continue
        if m.get("url") is None:
            ck.add(f"{item_path}.url", "is required")
            continue
        url = ck.get(m, item_path, "url", "", _as_hook_url)
        events: tuple[str, ...] = ROLLOUT_EVENTS
        raw = m.get("events")
        if raw is not None:
            if not isinstance(raw, list) or not raw:
                ck.add(f"{item_path}.events", f"must be a list of {', '.join(ROLLOUT_EVENTS)}")
            else:
                unknown = [e for e in raw if e not in ROLLOUT_EVENTS]
                if unknown:
                    ck.add(f"{item_path}.events", f"unknown event {unknown[0]!r}; "
                           f"they are {', '.join(ROLLOUT_EVENTS)}")  # fmt: skip
                events = tuple(dict.fromkeys(str(e) for e in raw))
        if url:
            hooks.append(Webhook(url, events))
    return tuple(hooks)


def _rollouts(ck: _Checker, value: Any, path: str) -> Rollouts:
    d = Rollouts()
    if value is None:
        return d
    m = ck.mapping(value, path, ("hold", "max", "on_inconclusive", "analysis", "webhooks")) or {}
    hold = ck.get(m, path, "hold", d.hold, _DURATION_GE0)
    longest = ck.get(m, path, "max", d.max, _DURATION_GT0)
    if longest < hold:
        ck.add(f"{path}.max", "must be at least hold")
    return Rollouts(
        hold=hold,
        max=longest,
        on_inconclusive=ck.get(m, path, "on_inconclusive", d.on_inconclusive, _as_inconclusive),
        analysis=_analysis(ck, m.get("analysis"), f"{path}.analysis", d.analysis),
        webhooks=_webhooks(ck, m.get("webhooks"), f"{path}.webhooks"),
    )


DEFAULT_STEPS = (5.0, 25.0, 50.0, 100.0)
_PLAN_KEYS = (
    "pool", "strategy", "steps", "analysis", "on_inconclusive", "webhooks", "gates",
    "preview", "auto_promote", "keep",
)  # fmt: skip


def parse_rollout(data: Any, defaults: Rollouts) -> RolloutPlan:
    """A rollout's request body (contract section 8) as a plan, or ConfigError naming the
    field of every problem (`steps[2].weight: must be above the step before`). Whether the
    pool exists is the caller's business (404, not 400)."""
    ck = _Checker(None)
    if not isinstance(data, dict):
        ck.add("", "must be a JSON object")
        raise ConfigError(ck.problems)
    ck.mapping(data, "", _PLAN_KEYS)
    pool = data.get("pool")
    if not isinstance(pool, str) or not pool:
        ck.add("pool", "is required: the name of the candidate pool")
        pool = ""
    strategy = data.get("strategy", "canary")
    if strategy not in ("canary", "bluegreen"):
        ck.add("strategy", "must be canary or bluegreen")
        strategy = "canary"
    analysis = _analysis(ck, data.get("analysis"), "analysis", defaults.analysis, False)
    on_inconclusive = ck.get(
        data, "", "on_inconclusive", defaults.on_inconclusive, _as_inconclusive
    )
    webhooks = defaults.webhooks
    if "webhooks" in data:
        webhooks = _webhooks(ck, data["webhooks"], "webhooks")
    gates = _gates(ck, data.get("gates"))
    if strategy == "canary":
        for key in ("preview", "auto_promote", "keep"):
            if key in data:
                ck.add(key, "is for strategy bluegreen")
        steps = _steps(ck, data.get("steps"), defaults)
        plan = RolloutPlan(pool, "canary", steps, analysis, on_inconclusive, webhooks, gates)
    else:
        if "steps" in data:
            ck.add("steps", "is for strategy canary (bluegreen has preview and keep)")
        preview = data.get("preview")
        m = {} if preview is None else (ck.mapping(preview, "preview", ("hold", "max")) or {})
        hold = ck.get(m, "preview", "hold", defaults.hold, _DURATION_GE0)
        longest = ck.get(m, "preview", "max", max(defaults.max, hold), _DURATION_GT0)
        if longest < hold:
            ck.add("preview.max", "must be at least hold")
        keep = ck.get(data, "", "keep", 600.0, _DURATION_GE0)
        auto = ck.get(data, "", "auto_promote", False, _as_json_bool)
        steps = (Step(0.0, hold, longest), Step(100.0, keep, keep))
        plan = RolloutPlan(
            pool, "bluegreen", steps, analysis, on_inconclusive, webhooks, gates, auto, keep
        )
    if ck.problems:
        raise ConfigError(ck.problems)
    return plan


def _as_json_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid("must be true or false")
    return value


def _gates(ck: _Checker, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        ck.add("gates", "must be a list of {url}")
        return ()
    urls = []
    for i, item in enumerate(value):
        m = ck.mapping(item, f"gates[{i}]", ("url",))
        if m is None:
            continue
        if m.get("url") is None:
            ck.add(f"gates[{i}].url", "is required")
            continue
        url = ck.get(m, f"gates[{i}]", "url", "", _as_hook_url)
        if url:
            urls.append(url)
    return tuple(urls)


def _steps(ck: _Checker, value: Any, defaults: Rollouts) -> tuple[Step, ...]:
    raw: list[Any] = list(DEFAULT_STEPS) if value is None else value
    if not isinstance(raw, list) or not raw:
        ck.add("steps", "must be a list of weights, {weight, hold, max} or {pause: true}")
        return ()
    steps: list[Step] = []
    last = 0.0
    for i, item in enumerate(raw):
        path = f"steps[{i}]"
        hold, longest = defaults.hold, defaults.max
        if isinstance(item, dict):
            if item.get("pause") is not None or "pause" in item:
                m = ck.mapping(item, path, ("pause",)) or {}
                if m.get("pause") is not True:
                    ck.add(f"{path}.pause", "must be true")
                steps.append(Step(None, 0.0, 0.0))
                continue
            m = ck.mapping(item, path, ("weight", "hold", "max")) or {}
            if m.get("weight") is None:
                ck.add(f"{path}.weight", "is required")
                continue
            weight = ck.get(m, path, "weight", -1.0, _as_step_weight)
            hold = ck.get(m, path, "hold", defaults.hold, _DURATION_GE0)
            longest = ck.get(m, path, "max", max(defaults.max, hold), _DURATION_GT0)
            if longest < hold:
                ck.add(f"{path}.max", "must be at least hold")
            weight_path = f"{path}.weight"
        else:
            try:
                weight = _as_step_weight(item)
            except _Invalid as exc:
                ck.add(path, str(exc))
                continue
            longest = max(longest, hold)
            weight_path = path
        if weight < 0:
            continue
        if weight <= last:
            ck.add(weight_path, "must be above the weight of the step before (steps rise)")
        last = max(last, weight)
        steps.append(Step(weight, hold, longest))
    if steps and all(s.weight is None for s in steps):
        ck.add("steps", "must have at least one weight")
    return tuple(steps)


def _as_step_weight(value: Any) -> float:
    if isinstance(value, str):  # steps come from JSON: a number is a number
        raise _Invalid("must be a number above 0, at most 100")
    number = _as_float(value, "a number above 0, at most 100")
    if not 0 < number <= 100:
        raise _Invalid("must be above 0 and at most 100")
    return number


# ---------------------------------------------------------------------------------------
# Reading the file

# The C loader is several times faster; the pure-Python one behaves the same.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE_TAG = "tag:yaml.org,2002:merge"
_INT_TAG = "tag:yaml.org,2002:int"
_STR_TAG = "tag:yaml.org,2002:str"

# Bounds on the work of reading a file, checked before any Python object is built: its
# size, and its number of nodes once every alias is expanded (a "billion laughs" of nine
# levels is a few hundred bytes and a billion nodes). No config comes near either.
MAX_CONFIG_BYTES = 1 << 20
MAX_NODES = 100_000
# A longer integer costs (a YAML 1.1 base-60 int is quadratic to build) or fails (int()
# refuses over 4300 digits); no setting needs one.
_MAX_INT_CHARS = 100


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _entries(node: yaml.Node, path: str) -> list[tuple[str, yaml.Node, int]]:
    """(YAML path, child node, line) of a node's keys, values and items, in file order."""
    out: list[tuple[str, yaml.Node, int]] = []
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out.append((f"{path}[{i}]", item, item.start_mark.line + 1))
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            line = key.start_mark.line + 1
            named = isinstance(key, yaml.ScalarNode) and key.tag != _MERGE_TAG
            out.append((path, key, line))
            out.append((_join(path, key.value) if named else path, value, line))
    return out


def _bound_expansion(root: yaml.Node, long_ints: set[int]) -> ConfigProblem | None:
    """A problem when the document, with every alias expanded, has more than MAX_NODES
    nodes, or an alias inside the node it names; else None. Each distinct node is sized
    once (aliases repeat a node, they do not copy it), so this is linear in the file.
    Integers longer than _MAX_INT_CHARS become strings, their nodes added to `long_ints`
    for `_index_lines` to report."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()  # the nodes on the path being walked
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, closing = stack.pop()
        key = id(node)
        if closing:
            open_nodes.discard(key)
            total = 1 + sum(sizes[id(child)] for child in _children(node))
            sizes[key] = min(total, MAX_NODES + 1)
        elif key in open_nodes:
            message = "invalid YAML: an alias inside the node it refers to (recursive)"
            return ConfigProblem("", message, node.start_mark.line + 1)
        elif key not in sizes:
            if node.tag == _INT_TAG and len(node.value) > _MAX_INT_CHARS:
                node.tag = _STR_TAG
                long_ints.add(key)
            open_nodes.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in _children(node))
    if sizes[id(root)] <= MAX_NODES:
        return None
    # Point at the first entry, in file order, that alone goes beyond the bound.
    path, node, line = "", root, root.start_mark.line + 1
    while True:
        over = [entry for entry in _entries(node, path) if sizes[id(entry[1])] > MAX_NODES]
        if not over:
            break
        path, node, line = over[0]
    message = f"expands to more than {MAX_NODES} YAML nodes with its aliases (an alias bomb?)"
    return ConfigProblem(path, message, line)


def _index_lines(
    node: yaml.Node,
    path: str,
    lines: dict[str, int],
    problems: list[ConfigProblem],
    long_ints: set[int],
) -> None:
    """Record the line of every key and list item; report duplicate keys (PyYAML keeps the
    last one silently, and a typo must not be silently ignored) and `long_ints`."""
    if id(node) in long_ints:
        message = f"must not be an integer of more than {_MAX_INT_CHARS} characters"
        problems.append(ConfigProblem(path, message, node.start_mark.line + 1))
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                continue  # merged keys (<<: *base) keep the line of the mapping holding them
            child, line = _join(path, key_node.value), key_node.start_mark.line + 1
            if child in seen:
                problems.append(ConfigProblem(child, "duplicate key", line))
            seen.add(child)
            lines[child] = line
            _index_lines(value_node, child, lines, problems, long_ints)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            child = f"{path}[{i}]"
            lines[child] = item.start_mark.line + 1
            _index_lines(item, child, lines, problems, long_ints)


def load(path: str, env: Mapping[str, str] | None = None) -> Config:
    """Read and parse a config file. OSError and YAML syntax errors become ConfigError."""

    def fail(message: str, line: int | None = None) -> ConfigError:
        return ConfigError([ConfigProblem("", message, line)], source=path)

    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise fail(f"cannot read config file: {e.strerror or e}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise fail(f"config file is larger than {MAX_CONFIG_BYTES >> 20} MiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise fail("cannot read config file: not UTF-8 text") from None

    lines: dict[str, int] = {}
    problems: list[ConfigProblem] = []
    long_ints: set[int] = set()
    loader = _Loader(text)
    try:
        node = loader.get_single_node()  # aliases are references here: no expansion yet
        if node is None:
            raise fail("empty config file")
        too_big = _bound_expansion(node, long_ints)
        if too_big is not None:
            raise ConfigError([too_big], source=path)
        _index_lines(node, "", lines, problems, long_ints)  # before merge keys are rewritten
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as e:
        line = e.problem_mark.line + 1 if e.problem_mark is not None else None
        raise fail(f"invalid YAML: {e.problem or e.context or 'syntax error'}", line) from None
    except yaml.YAMLError as e:
        raise fail(f"invalid YAML: {e}") from None
    except RecursionError:  # a self-referencing anchor
        raise fail("invalid YAML: nested too deeply or recursive") from None
    finally:
        loader.dispose()

    try:
        config = parse(data, lines, env)
    except ConfigError as e:
        reported = {p.path for p in problems}  # a long integer is not also "not a number"
        problems += [p for p in e.problems if p.path not in reported]
    if problems:
        raise ConfigError(_in_file_order(problems), source=path)
    return config
