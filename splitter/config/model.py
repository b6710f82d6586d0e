"""The config model: frozen dataclasses, the bounds every value keeps, and what the rest of
splitter reads of a config (see docs/configuration.md)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

__all__ = [
    "ADMIN_COOKIE",
    "DEFAULT_ROUTE",
    "MAX_DURATION",
    "MAX_WEIGHT",
    "MIN_TOKEN_LENGTH",
    "PROTOCOLS",
    "ROLLOUT_EVENTS",
    "ROUTE_NAME",
    "SHADOW_IGNORE_HEADERS",
    "SHADOW_METHODS",
    "TLS",
    "Address",
    "Admin",
    "Analysis",
    "Backend",
    "BackendTLS",
    "CertificatePair",
    "Config",
    "HealthCheck",
    "Limits",
    "MetricsListener",
    "Override",
    "Pool",
    "RolloutPlan",
    "Rollouts",
    "Route",
    "Segment",
    "Shadow",
    "ShadowTest",
    "Shutdown",
    "Step",
    "Sticky",
    "Store",
    "Timeouts",
    "Webhook",
    "is_loopback_host",
]

# Weights are finite numbers from 0 to a million (docs/configuration.md#the-config-file), in the
# file as in the API:
# bounded, a weight stays exact as a float, an int in JSON, and a share of a sum.
MAX_WEIGHT = 1_000_000
# Durations anywhere (config, API, state) are at most 30 days (docs/admin-api.md): a longer one
# is a typo, and an infinite one breaks every clock sum it enters.
MAX_DURATION = 30 * 86400.0
# A token short enough to guess is no protection (docs/admin-api.md).
MIN_TOKEN_LENGTH = 16
# The dashboard's session cookie (docs/admin-api.md#live-statistics-and-the-stream): never
# forwarded to a backend (docs/admin-api.md).
ADMIN_COOKIE = "splitter_admin"


@dataclass(frozen=True, slots=True)
class Address:
    """A host:port to listen on. `host` has no brackets ("::1", "0.0.0.0")."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class BackendTLS:
    """How splitter checks an https:// backend (a pool's `tls`): against the system's CAs
    or the PEM file `ca`; `verify: false` only when written
    (docs/configuration.md#https-backends)."""

    ca: str | None = None
    verify: bool = True


@dataclass(frozen=True, slots=True)
class Backend:
    url: str  # exactly as written in the config (the metrics label)
    host: str  # from the URL, no brackets
    port: int  # from the URL; 80 (http) or 443 (https) when absent
    weight: float = 1.0
    tls: BackendTLS | None = None  # an https:// backend; None: plain http


@dataclass(frozen=True, slots=True)
class CertificatePair:
    cert: str  # PEM: the certificate, then its chain
    key: str  # PEM, unencrypted


@dataclass(frozen=True, slots=True)
class TLS:
    """The proxy listener's TLS (docs/configuration.md#tls): the first pair is the default."""

    certificates: tuple[CertificatePair, ...]
    min_version: str = "1.2"  # "1.2" | "1.3"


# What a pool's backends speak (docs/configuration.md#http2-and-grpc): HTTP/1.1 (an
# https:// backend may pick h2 by ALPN), or HTTP/2 with prior knowledge on plain TCP.
PROTOCOLS = ("http1", "h2c")


@dataclass(frozen=True, slots=True)
class Pool:
    name: str
    weight: float
    backends: tuple[Backend, ...]
    protocol: str = "http1"  # one of PROTOCOLS; an h2c pool's backends are all http://


# Route names (docs/configuration.md#routes-and-segments); `default` is the route of a config
# with the top-level `pools`, which matches every request.
ROUTE_NAME = r"[a-z0-9][a-z0-9_-]{0,39}"
DEFAULT_ROUTE = "default"


@dataclass(frozen=True, slots=True)
class Segment:
    """Chosen users sent to a pool before the weights (docs/configuration.md#segments).

    Exactly one kind: a request header, a cookie or a query parameter (`name`, and `value`
    to compare with; None: present with any value), or the client's address (`source`,
    CIDRs as written but normalised: "10.0.0.0/8")."""

    pool: str
    kind: str  # "header" | "cookie" | "query" | "source"
    name: str = ""  # header (as written), cookie or query parameter name
    value: str | None = None
    source: tuple[str, ...] = ()


# A shadow's defaults: the methods copied (safe ones only, unless the config lists more),
# and the response headers left out of the comparison, which differ between any two
# answers of one version (times, request ids, cookies, validators).
SHADOW_METHODS = ("GET", "HEAD")
SHADOW_IGNORE_HEADERS = ("date", "x-request-id", "set-cookie", "server", "etag", "last-modified")


@dataclass(frozen=True, slots=True)
class Shadow:
    """Shadow traffic (a `shadow` section, top-level or in a route; parsed by
    config.shadow): a share of the requests that the route's weighted choice sends to
    another pool is copied to `pool`, and its answers compared with the primary's.

    `reference`, when set, gets a second copy and is a second copy of the primary's
    version: where the primary and the reference differ, it is noise. `methods` are upper
    case; `ignore_headers` lower case; `ignore_json` are JSON pointers (RFC 6901) as
    written, where a `*` token matches any key or index."""

    pool: str
    share: float  # 0..1
    reference: str | None = None
    methods: tuple[str, ...] = SHADOW_METHODS
    max_body: int = 65536  # bytes; a body above it is counted, not compared
    max_in_flight: int = 64  # copies at once; beyond, a copy is skipped and counted
    ignore_headers: tuple[str, ...] = SHADOW_IGNORE_HEADERS
    ignore_json: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Route:
    """One service behind splitter: which requests it takes, its pools and segments.

    `hosts` are lower-case, without a trailing dot; an entry "*.example.com" matches one or
    more labels in front of "example.com". No hosts: every Host. `path_prefix` matches whole
    path segments ("/api": "/api", "/api/x", "/api?q", not "/apix"); it never ends in "/"
    unless it is "/". `rollouts` is the top-level `rollouts` with the route's overrides."""

    name: str
    pools: tuple[Pool, ...]
    hosts: tuple[str, ...] = ()
    path_prefix: str = "/"
    segments: tuple[Segment, ...] = ()
    rollouts: Rollouts = field(default_factory=lambda: Rollouts())
    shadow: Shadow | None = None  # the route's shadow traffic as the file says (section 15)

    def weights(self) -> dict[str, float]:
        return {p.name: p.weight for p in self.pools}

    def pool(self, name: str) -> Pool | None:
        for p in self.pools:
            if p.name == name:
                return p
        return None


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
    """How the rollout judge decides (docs/rollouts.md)."""

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
class ShadowTest:
    """What makes a step a canary's test step on shadow traffic (docs/rollouts.md): the
    share of the requests copied to the candidate, and the difference rate (beyond noise)
    it may have against the primary's answers."""

    share: float = 0.1  # (0, 1]
    max_diff_rate: float = 0.01  # [0, 1)


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a rollout: a weight for the candidate (percent), a manual gate, or (the
    first step of a canary only) a test on shadow traffic, at weight 0."""

    weight: float | None  # None: a manual gate ({"pause": true}); 0.0 for a shadow step
    hold: float
    max: float
    shadow: ShadowTest | None = None  # a test step: the candidate at 0 gets copies


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
    """Shared state for several replicas (docs/operations.md#several-replicas): a Redis
    URL, split up.

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
    # In config order; a config with the top-level `pools` has one route, `default`.
    routes: tuple[Route, ...]
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
    # docs/rollouts.md: peers whose X-Forwarded-For names the client (CIDRs, as written but
    # normalised: "10.0.0.0/8", "2001:db8::/32"); and whether every connection to the proxy
    # listener starts with a PROXY protocol header (v1 or v2) naming the client.
    trusted_proxies: tuple[str, ...] = ()
    proxy_protocol: bool = False
    tls: TLS | None = None  # None: the proxy listener speaks plain HTTP
    # HTTP/2 from clients (section 14): h2 by ALPN on TLS, h2c with prior knowledge on plain.
    http2: bool = True

    def route(self, name: str) -> Route | None:
        for r in self.routes:
            if r.name == name:
                return r
        return None

    @property
    def main_route(self) -> Route | None:
        """The route the calls without a route act on (docs/admin-api.md#routes): `default`
        when there is one, else the only route; None with several and no `default`."""
        if len(self.routes) == 1:
            return self.routes[0]
        return self.route(DEFAULT_ROUTE)

    # The main route's pools and weights (a config that has one: every config of one route).
    @property
    def pools(self) -> tuple[Pool, ...]:
        main = self.main_route
        return main.pools if main is not None else ()

    def weights(self) -> dict[str, float]:
        main = self.main_route
        return main.weights() if main is not None else {}

    def pool(self, name: str) -> Pool | None:
        main = self.main_route
        return main.pool(name) if main is not None else None


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
