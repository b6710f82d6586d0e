"""The config's sections, and `parse`: a mapping in, a `Config` out, every problem named
with its path (and line, when the mapping came from a file)."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

from splitter.config.convert import (
    _ENV_REF,
    _POOL_NAME,
    CIDR_HINT,
    DURATION_GE0,
    DURATION_GT0,
    Checker,
    Convert,
    Invalid,
    T,
    _split_host_port,
    cidr_items,
    join_path,
    to_address,
    to_backend_url,
    to_bool,
    to_confidence,
    to_fraction,
    to_hook_url,
    to_inconclusive,
    to_int,
    to_max_age,
    to_per_address,
    to_port,
    to_protocol,
    to_ratio,
    to_size,
    to_str,
    to_token,
    to_url_path,
    to_weight,
    to_workers,
)
from splitter.config.model import (
    DEFAULT_ROUTE,
    MIN_TOKEN_LENGTH,
    ROLLOUT_EVENTS,
    ROUTE_NAME,
    TLS,
    Address,
    Admin,
    Analysis,
    Backend,
    BackendTLS,
    CertificatePair,
    Config,
    HealthCheck,
    Limits,
    MetricsListener,
    Override,
    Pool,
    Rollouts,
    Route,
    Shutdown,
    Sticky,
    Store,
    Timeouts,
    Webhook,
    is_loopback_host,
)
from splitter.config.routes import (
    Claim,
    check_protocols,
    check_ties,
    route_hosts,
    segments_section,
    to_path_prefix,
)
from splitter.config.shadow import shadow_section
from splitter.errors import ConfigError, ConfigProblem

# ---------------------------------------------------------------------------------------
# Sections


def substitute(ck: Checker, value: Any, path: str, env: Mapping[str, str]) -> Any:
    """Replace ${VAR} and ${VAR:-default} in every string value (keys are left alone)."""
    if isinstance(value, dict):
        return {k: substitute(ck, v, join_path(path, k), env) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(ck, v, f"{path}[{i}]", env) for i, v in enumerate(value)]
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


def _backends(
    ck: Checker, value: Any, path: str, tls: BackendTLS | None = None
) -> tuple[Backend, ...]:
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
            weight = ck.get(m, item_path, "weight", 1.0, to_weight)
            if url is None:
                ck.add(url_path, "is required")
                continue
        try:
            host, port, https = to_backend_url(url)
        except Invalid as e:
            ck.add(url_path, str(e))
            continue
        key = (host.lower(), port)
        if key in seen:
            ck.add(url_path, f"duplicate backend (same as {path}[{seen[key]}])")
            continue
        seen[key] = i
        backend_tls = (tls or BackendTLS()) if https else None
        backends.append(Backend(url=url, host=host, port=port, weight=weight, tls=backend_tls))
    return tuple(backends)


def _backend_tls(ck: Checker, value: Any, path: str) -> BackendTLS | None:
    """A pool's `tls`: how its https:// backends are verified."""
    if value is None:
        return None
    m = ck.mapping(value, path, ("ca", "verify"))
    if m is None:
        return None
    ca = ck.get(m, path, "ca", None, to_str)
    verify = ck.get(m, path, "verify", True, to_bool)
    if ca is not None and not verify:
        ck.add(f"{path}.verify", "verify: false with a ca: the ca would not be used")
    return BackendTLS(ca=ca, verify=verify)


_TLS_VERSIONS = ("1.2", "1.3")


def _tls(ck: Checker, value: Any) -> TLS | None:
    """The proxy listener's `tls` (docs/configuration.md#tls). Whether the files load is
    checked where files are read (splitter.tls.certs.check_files)."""
    if value is None:
        return None
    m = ck.mapping(value, "tls", ("certificates", "min_version"))
    if m is None:
        return None
    version = m.get("min_version", "1.2")
    if isinstance(version, float):  # `min_version: 1.2` unquoted
        version = f"{version:g}"
    if version not in _TLS_VERSIONS:
        ck.add("tls.min_version", 'must be "1.2" or "1.3"')
        version = "1.2"
    items = m.get("certificates")
    pairs: list[CertificatePair] = []
    if not isinstance(items, list) or not items:
        ck.add("tls.certificates", "must list at least one {cert: FILE, key: FILE}")
        return None
    for i, item in enumerate(items):
        path = f"tls.certificates[{i}]"
        pair = ck.mapping(item, path, ("cert", "key"))
        if pair is None:
            continue
        files = []
        for key in ("cert", "key"):
            if pair.get(key) is None:
                ck.add(f"{path}.{key}", "is required: the path of a PEM file")
            files.append(ck.get(pair, path, key, "", to_str))
        if all(files):
            pairs.append(CertificatePair(cert=files[0], key=files[1]))
    return TLS(certificates=tuple(pairs), min_version=str(version)) if pairs else None


def _pools(ck: Checker, value: Any, where: str = "pools") -> tuple[Pool, ...]:
    """A `pools` mapping (the top-level one, or a route's at `where`)."""
    if value is None:
        ck.add(where, "is required: at least one pool with its backends")
        return ()
    if not isinstance(value, dict):
        ck.add(where, "must be a mapping of pool name to {weight, backends}")
        return ()
    if not value:
        ck.add(where, "must define at least one pool")
        return ()
    pools: list[Pool] = []
    all_weights_known = True
    for name, spec in value.items():
        path = join_path(where, name)
        if not isinstance(name, str) or not _POOL_NAME.fullmatch(name):
            ck.add(path, "pool name must be letters, digits, '_', '.' or '-'")
        elif name == "none":  # the metrics' label for requests refused before a pool
            ck.add(path, "'none' is reserved; name the pool otherwise")
        m = ck.mapping(spec, path, ("weight", "backends", "tls", "protocol"))
        if m is None:
            all_weights_known = False
            continue
        weight = ck.get(m, path, "weight", 0.0, to_weight)
        all_weights_known = all_weights_known and not ck.has_problem(f"{path}.weight")
        tls = _backend_tls(ck, m.get("tls"), f"{path}.tls")
        backends = _backends(ck, m.get("backends"), f"{path}.backends", tls)
        if tls is not None and backends and not any(b.tls for b in backends):
            ck.add(f"{path}.tls", "applies to https:// backends, and this pool has none")
        protocol = ck.get(m, path, "protocol", "http1", to_protocol)
        https = next((b.url for b in backends if b.tls is not None), None)
        if protocol == "h2c" and https is not None:
            ck.add(f"{path}.protocol", f"h2c is HTTP/2 on plain TCP, not for {https}: https "
                   "backends negotiate h2 by ALPN; use http:// for h2c")  # fmt: skip
        pools.append(Pool(str(name), weight, backends, protocol))
    # Only judged when every weight was readable, to avoid a second error for the same typo.
    if all_weights_known and not any(p.weight > 0 for p in pools):
        ck.add(where, "at least one pool must have a weight > 0")
    return tuple(pools)


def _admin(ck: Checker, value: Any) -> Admin:
    admin = _section(ck, value, "admin", Admin, {"listen": to_address, "token": to_str})
    # The admin API can change weights: open to the network, it must ask for a token.
    if not admin.token and not ck.has_problem("admin.listen") \
            and not is_loopback_host(admin.listen.host):  # fmt: skip
        ck.add("admin.token", "required when admin.listen is not a loopback address")
    if admin.token and len(admin.token) < MIN_TOKEN_LENGTH:
        ck.add("admin.token", f"must be at least {MIN_TOKEN_LENGTH} characters")
    return admin


def _trusted_proxies(ck: Checker, value: Any) -> tuple[str, ...]:
    """`trusted_proxies`: a list of CIDRs, each normalised; an IPv4-mapped IPv6 network
    becomes its IPv4 network (a client's address is compared in its IPv4 form)."""
    if value is None:
        return ()
    if not isinstance(value, list):
        ck.add("trusted_proxies", f"must be a list of CIDRs ({CIDR_HINT})")
        return ()
    return cidr_items(ck, value, "trusted_proxies")


_STORE_HINT = "must be redis://[[user]:password@]host[:port][/db], or rediss:// for TLS"
_STORE_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}", re.ASCII)


def _store(ck: Checker, value: Any) -> Store | None:
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
    prefix = ck.get(m, "store", "prefix", "splitter", to_store_prefix)
    try:
        return to_store_url(m["url"], prefix)
    except Invalid as e:
        ck.add("store.url", str(e))
        return None


def to_store_prefix(value: Any) -> str:
    if not isinstance(value, str) or not _STORE_PREFIX.fullmatch(value):
        raise Invalid("must be a short name: up to 64 letters, digits and _ . : -")
    return value


def to_store_url(value: Any, prefix: str) -> Store:
    """redis://[[user]:password@]host[:port][/db]; the user information is taken as
    written (no percent-decoding), so that `${REDIS_PASSWORD}` works whatever it holds."""
    if not isinstance(value, str):
        raise Invalid(_STORE_HINT)
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() not in ("redis", "rediss"):
        raise Invalid(_STORE_HINT)
    userinfo, at, rest = rest.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = user or None
        password = secret if colon else None
        if not colon:  # redis://password@host is the classic form (no user)
            username, password = None, user or None
    if any(c in rest for c in "?#"):
        raise Invalid(f"{_STORE_HINT}: no query or fragment")
    hostport, slash, db_text = rest.partition("/")
    db = 0
    if slash and db_text:
        if not (db_text.isascii() and db_text.isdigit()) or int(db_text) > 1_000_000:
            raise Invalid(f"{_STORE_HINT}: the db is a number")
        db = int(db_text)
    host, port = _split_host_port(hostport, _STORE_HINT) if hostport else ("", None)
    if not host:
        raise Invalid(f"{_STORE_HINT}: the host is missing")
    return Store(
        url=value,
        tls=scheme.lower() == "rediss",
        host=host,
        port=6379 if port is None else to_port(port, 1, _STORE_HINT),
        db=db,
        username=username,
        password=password,
        prefix=prefix,
    )


def _section(
    ck: Checker, value: Any, path: str, cls: Callable[..., T], fields: dict[str, Convert]
) -> T:
    """A section whose keys are all optional: absent, null or invalid means the default."""
    m = {} if value is None else (ck.mapping(value, path, tuple(fields)) or {})
    defaults = cls()
    return cls(**{k: ck.get(m, path, k, getattr(defaults, k), f) for k, f in fields.items()})


_INT_GE1 = functools.partial(to_int, minimum=1)
_SECTIONS: dict[str, tuple[Callable[..., Any], dict[str, Convert]]] = {
    "sticky": (Sticky, {"cookie": to_token, "max_age": to_max_age, "secret": to_str}),
    "override": (Override, {"header": to_token}),
    "metrics": (MetricsListener, {"listen": to_address}),
    "health_check": (HealthCheck, {
        "path": to_url_path, "interval": DURATION_GT0, "timeout": DURATION_GT0,
        "healthy_threshold": _INT_GE1, "unhealthy_threshold": _INT_GE1,
    }),
    "timeouts": (Timeouts, {"connect": DURATION_GT0, "read": DURATION_GT0}),
    "limits": (Limits, {
        "max_body": to_size, "header_timeout": DURATION_GT0, "body_idle_timeout": DURATION_GT0,
        "keepalive_timeout": DURATION_GT0, "upstream_idle_timeout": DURATION_GT0,
        "upstream_max_idle": _INT_GE1,
        "max_request_line": _INT_GE1, "max_header_bytes": _INT_GE1, "max_header_count": _INT_GE1,
    }),
    "shutdown": (Shutdown, {"accept_grace": DURATION_GE0, "grace": DURATION_GE0}),
}  # fmt: skip


def in_file_order(problems: list[ConfigProblem]) -> list[ConfigProblem]:
    # Stable: problems without a line (a missing top-level key) come first, in found order.
    return sorted(problems, key=lambda p: p.line or 0)


def parse(
    data: Any, lines: Mapping[str, int] | None = None, env: Mapping[str, str] | None = None
) -> Config:
    """Validate a parsed YAML document into a Config or raise ConfigError listing every problem.

    `lines` maps a YAML path ("pools.canary.weight", "routes[1].segments[0].pool") to its
    1-based line; `env` defaults to os.environ.

    A config has either the top-level `pools` (and `segments`): one route, `default`,
    which takes every request; or `routes`, each with its own pools and segments. No two
    routes may tie: with the same `path_prefix`, both without `hosts`, or the same entry
    in both `hosts`. An exact host beats a wildcard, a longer wildcard a shorter one
    ("*.shop.example.com" beats "*.example.com"), any host no hosts; then the longest
    `path_prefix` wins; so two different wildcards never tie (config.routes).
    """
    ck = Checker(lines)
    if not isinstance(data, dict):
        ck.add("", "must be a mapping (listen: ..., pools: ...)")
        raise ConfigError(ck.problems)
    data = substitute(ck, data, "", os.environ if env is None else env)
    top = (
        "listen", "admin", "pools", "segments", "routes", "state_file", "access_log", "workers",
        "rollouts", "store", "trusted_proxies", "proxy_protocol", "tls", "shadow", "http2",
        *_SECTIONS,
    )  # fmt: skip
    ck.mapping(data, "", top)
    if data.get("listen") is None:
        ck.add("listen", "is required (host:port of the proxy, e.g. 0.0.0.0:8080)")
    d = Config(listen=Address("", 0), routes=())
    listen = ck.get(data, "", "listen", d.listen, to_address)
    admin = _admin(ck, data.get("admin"))
    sections = {
        name: _section(ck, data.get(name), name, cls, fields)
        for name, (cls, fields) in _SECTIONS.items()
        # sticky and override are off when absent or null; the others take their defaults
        if data.get(name) is not None or name not in ("sticky", "override")
    }
    override = sections.get("override")
    override_header = override.header if isinstance(override, Override) else None
    rollouts = _rollouts(ck, data.get("rollouts"), "rollouts", Rollouts())
    config = Config(
        listen=listen,
        admin=admin,
        routes=_service(ck, data, rollouts, override_header),
        state_file=ck.get(data, "", "state_file", d.state_file, to_str),
        access_log=ck.get(data, "", "access_log", d.access_log, to_bool),
        workers=ck.get(data, "", "workers", d.workers, to_workers),
        rollouts=rollouts,
        store=_store(ck, data.get("store")),
        trusted_proxies=_trusted_proxies(ck, data.get("trusted_proxies")),
        proxy_protocol=ck.get(data, "", "proxy_protocol", d.proxy_protocol, to_bool),
        tls=_tls(ck, data.get("tls")),
        http2=ck.get(data, "", "http2", d.http2, to_bool),
        **sections,
    )
    if not ck.problems:  # every route read: the paths below are the file's
        where = "pools" if data.get("routes") is None else "routes[{}].pools"
        check_protocols(ck, [(where.format(i), r.pools) for i, r in enumerate(config.routes)])
    if ck.problems:
        raise ConfigError(in_file_order(ck.problems))
    return config


def _service(
    ck: Checker, data: dict[Any, Any], rollouts: Rollouts, override: str | None
) -> tuple[Route, ...]:
    """The routes: the top-level `pools` and `segments` as the one route `default`, or
    the `routes` list; never both, and one of them."""
    pools, routes = data.get("pools"), data.get("routes")
    if pools is None and routes is None:
        ck.add("pools", "is required: at least one pool with its backends (or routes: "
               "a list of routes, each with its own pools)")  # fmt: skip
        return ()
    if routes is None:
        route_pools = _pools(ck, pools)
        segments = segments_section(
            ck, data.get("segments"), "segments", _pool_names(pools), "the pools", override
        )
        shadow = shadow_section(ck, data.get("shadow"), "shadow", _pool_weights(pools), "the pools")
        return (
            Route(DEFAULT_ROUTE, route_pools, segments=segments, rollouts=rollouts, shadow=shadow),
        )
    if pools is not None:
        ck.add("routes", "cannot be used with the top-level pools: either pools (one "
               "route, default) or routes, each with its own pools")  # fmt: skip
    if data.get("segments") is not None:
        ck.add("segments", "the top-level segments go with the top-level pools: with "
               "routes, each route has its own segments")  # fmt: skip
    if data.get("shadow") is not None:
        ck.add("shadow", "the top-level shadow goes with the top-level pools: with "
               "routes, each route has its own shadow")  # fmt: skip
    return _routes(ck, routes, rollouts, override)


_ROUTE_KEYS = ("name", "hosts", "path_prefix", "pools", "segments", "rollouts", "shadow")
_ROUTE_NAME = re.compile(ROUTE_NAME)


def _routes(ck: Checker, value: Any, rollouts: Rollouts, override: str | None) -> tuple[Route, ...]:
    """The `routes` list, in order (see `parse` for how no two may tie)."""
    if not isinstance(value, list):
        ck.add("routes", "must be a list of routes, each with a name and its pools")
        return ()
    if not value:
        ck.add("routes", "must list at least one route")
        return ()
    routes: list[Route] = []
    names: dict[str, str] = {}  # name -> the path of the route that has it
    claims: list[Claim] = []
    for i, item in enumerate(value):
        path = f"routes[{i}]"
        m = ck.mapping(item, path, _ROUTE_KEYS)
        if m is None:
            continue
        name = _route_name(ck, m.get("name"), f"{path}.name", names)
        if name:
            names.setdefault(name, path)
        hosts = route_hosts(ck, m.get("hosts"), f"{path}.hosts")
        prefix = ck.get(m, path, "path_prefix", "/", to_path_prefix)
        raw_pools = m.get("pools")
        pools = _pools(ck, raw_pools, f"{path}.pools")
        pools_of = f"the pools of route {name!r}" if name else f"the pools of {path}"
        segments = segments_section(
            ck, m.get("segments"), f"{path}.segments", _pool_names(raw_pools), pools_of, override
        )
        own_rollouts = _rollouts(ck, m.get("rollouts"), f"{path}.rollouts", rollouts, True)
        shadow = shadow_section(
            ck, m.get("shadow"), f"{path}.shadow", _pool_weights(raw_pools), pools_of
        )
        routes.append(
            Route(name, pools, tuple(hosts or ()), prefix, segments, own_rollouts, shadow)
        )
        readable = not ck.has_problem(f"{path}.path_prefix") and (
            m.get("hosts") is None or hosts is not None
        )
        if readable:
            claims.append(Claim(path, name, prefix, hosts))
    check_ties(ck, claims)
    return tuple(routes)


def _route_name(ck: Checker, value: Any, path: str, names: Mapping[str, str]) -> str:
    """A route's name, or "" when it has none that can be used."""
    if value is None:
        ck.add(path, "is required: a name such as shop")
    elif not isinstance(value, str) or not _ROUTE_NAME.fullmatch(value):
        ck.add(path, "must be a route name: up to 40 lower-case letters, digits, '_' and '-', "
               "starting with a letter or digit")  # fmt: skip
    elif value == "none":  # the metrics' label for requests no route takes
        ck.add(path, "'none' is reserved; name the route otherwise")
    elif value in names:
        ck.add(path, f"duplicate route name (same as {names[value]})")
    else:
        return value
    return ""


def _pool_weights(value: Any) -> dict[str, float | None] | None:
    """The pools of a `pools` mapping as written, each with its weight (None when it cannot
    be read: its own error says so); None when it is not a mapping."""
    if not isinstance(value, dict):
        return None
    weights: dict[str, float | None] = {}
    for name, spec in value.items():
        weight: float | None = None
        if isinstance(spec, dict):
            try:
                weight = to_weight(spec.get("weight", 0.0))
            except Invalid:
                weight = None
        weights[str(name)] = weight
    return weights


def _pool_names(value: Any) -> list[str] | None:
    """The pool names a segment may send to: the keys of a `pools` mapping as written
    (a pool with a bad weight is still a pool); None when it is not a mapping."""
    return [str(name) for name in value] if isinstance(value, dict) else None


_ANALYSIS_FIELDS: dict[str, Convert] = {
    "confidence": to_confidence,
    "max_error_ratio": to_ratio,
    "min_error_rate": to_fraction,
    "max_slow_ratio": to_ratio,
    "latency_floor": DURATION_GE0,
    "warmup": DURATION_GE0,
    "max_per_address": to_per_address,
}
_CONFIG_ONLY = ("max_per_address",)


def analysis_section(
    ck: Checker, value: Any, path: str, base: Analysis, in_config: bool = True
) -> Analysis:
    if value is None:
        return base
    m = ck.mapping(value, path, tuple(_ANALYSIS_FIELDS)) or {}
    if not in_config:
        for key in _CONFIG_ONLY:
            if key in m:
                why = f"is set in the config (rollouts.analysis.{key}): it applies as requests"
                ck.add(join_path(path, key), why + " are recorded")
                m = {k: v for k, v in m.items() if k != key}
    return Analysis(
        **{k: ck.get(m, path, k, getattr(base, k), f) for k, f in _ANALYSIS_FIELDS.items()}
    )


def webhooks_section(ck: Checker, value: Any, path: str) -> tuple[Webhook, ...]:
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
        url = ck.get(m, item_path, "url", "", to_hook_url)
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


_ROLLOUT_KEYS = ("hold", "max", "on_inconclusive", "analysis", "webhooks")


def _rollouts(
    ck: Checker, value: Any, path: str, base: Rollouts, in_route: bool = False
) -> Rollouts:
    """A `rollouts` section over `base`: the defaults for the top-level one, the top-level
    one for a route's (whose `analysis` is merged key by key, and whose `webhooks`, when
    given, replace the top-level ones)."""
    if value is None:
        return base
    m = ck.mapping(value, path, _ROLLOUT_KEYS) or {}
    hold = ck.get(m, path, "hold", base.hold, DURATION_GE0)
    longest = ck.get(m, path, "max", base.max, DURATION_GT0)
    readable = not ck.has_problem(f"{path}.hold") and not ck.has_problem(f"{path}.max")
    if readable and longest < hold:
        if in_route and m.get("max") is None:
            ck.add(f"{path}.hold", f"must be at most max ({longest:g}s, from the top-level "
                   "rollouts; set max here too)")  # fmt: skip
        else:
            ck.add(f"{path}.max", "must be at least hold")
    analysis = m.get("analysis")
    if in_route and isinstance(analysis, dict):
        for key in _CONFIG_ONLY:
            if key in analysis:
                ck.add(join_path(f"{path}.analysis", key), "applies to the whole config: set it in "
                       "the top-level rollouts.analysis only")  # fmt: skip
        analysis = {k: v for k, v in analysis.items() if k not in _CONFIG_ONLY}
    webhooks = base.webhooks
    if m.get("webhooks") is not None:
        webhooks = webhooks_section(ck, m.get("webhooks"), f"{path}.webhooks")
    return Rollouts(
        hold=hold,
        max=longest,
        on_inconclusive=ck.get(m, path, "on_inconclusive", base.on_inconclusive, to_inconclusive),
        analysis=analysis_section(ck, analysis, f"{path}.analysis", base.analysis),
        webhooks=webhooks,
    )
