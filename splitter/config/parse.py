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
    join_path,
    to_address,
    to_backend_url,
    to_bool,
    to_cidr,
    to_confidence,
    to_fraction,
    to_hook_url,
    to_inconclusive,
    to_int,
    to_max_age,
    to_per_address,
    to_port,
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
    Address,
    Admin,
    Analysis,
    Backend,
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


def _backends(ck: Checker, value: Any, path: str) -> tuple[Backend, ...]:
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
            host, port = to_backend_url(url)
        except Invalid as e:
            ck.add(url_path, str(e))
            continue
        key = (host.lower(), port)
        if key in seen:
            ck.add(url_path, f"duplicate backend (same as {path}[{seen[key]}])")
            continue
        seen[key] = i
        backends.append(Backend(url=url, host=host, port=port, weight=weight))
    return tuple(backends)


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
        m = ck.mapping(spec, path, ("weight", "backends"))
        if m is None:
            all_weights_known = False
            continue
        weight = ck.get(m, path, "weight", 0.0, to_weight)
        all_weights_known = all_weights_known and not ck.has_problem(f"{path}.weight")
        backends = _backends(ck, m.get("backends"), f"{path}.backends")
        pools.append(Pool(name=str(name), weight=weight, backends=backends))
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
    out: list[str] = []
    for i, item in enumerate(value):
        try:
            network = to_cidr(item)
        except Invalid as e:
            ck.add(f"trusted_proxies[{i}]", str(e))
            continue
        if network not in out:
            out.append(network)
    return tuple(out)


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

    `lines` maps a YAML path ("pools.canary.weight") to its 1-based line; `env` defaults to
    os.environ.
    """
    ck = Checker(lines)
    if not isinstance(data, dict):
        ck.add("", "must be a mapping (listen: ..., pools: ...)")
        raise ConfigError(ck.problems)
    data = substitute(ck, data, "", os.environ if env is None else env)
    top = (
        "listen", "admin", "pools", "state_file", "access_log", "workers", "rollouts", "store",
        "trusted_proxies", "proxy_protocol", *_SECTIONS,
    )  # fmt: skip
    ck.mapping(data, "", top)
    if data.get("listen") is None:
        ck.add("listen", "is required (host:port of the proxy, e.g. 0.0.0.0:8080)")
    d = Config(listen=Address("", 0), routes=())
    listen = ck.get(data, "", "listen", d.listen, to_address)
    admin, pools = _admin(ck, data.get("admin")), _pools(ck, data.get("pools"))
    sections = {
        name: _section(ck, data.get(name), name, cls, fields)
        for name, (cls, fields) in _SECTIONS.items()
        # sticky and override are off when absent or null; the others take their defaults
        if data.get(name) is not None or name not in ("sticky", "override")
    }
    rollouts = _rollouts(ck, data.get("rollouts"), "rollouts")
    config = Config(
        listen=listen,
        admin=admin,
        routes=(Route(DEFAULT_ROUTE, pools, rollouts=rollouts),),
        state_file=ck.get(data, "", "state_file", d.state_file, to_str),
        access_log=ck.get(data, "", "access_log", d.access_log, to_bool),
        workers=ck.get(data, "", "workers", d.workers, to_workers),
        rollouts=rollouts,
        store=_store(ck, data.get("store")),
        trusted_proxies=_trusted_proxies(ck, data.get("trusted_proxies")),
        proxy_protocol=ck.get(data, "", "proxy_protocol", d.proxy_protocol, to_bool),
        **sections,
    )
    if ck.problems:
        raise ConfigError(in_file_order(ck.problems))
    return config


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


def _rollouts(ck: Checker, value: Any, path: str) -> Rollouts:
    d = Rollouts()
    if value is None:
        return d
    m = ck.mapping(value, path, ("hold", "max", "on_inconclusive", "analysis", "webhooks")) or {}
    hold = ck.get(m, path, "hold", d.hold, DURATION_GE0)
    longest = ck.get(m, path, "max", d.max, DURATION_GT0)
    if longest < hold:
        ck.add(f"{path}.max", "must be at least hold")
    return Rollouts(
        hold=hold,
        max=longest,
        on_inconclusive=ck.get(m, path, "on_inconclusive", d.on_inconclusive, to_inconclusive),
        analysis=analysis_section(ck, m.get("analysis"), f"{path}.analysis", d.analysis),
        webhooks=webhooks_section(ck, m.get("webhooks"), f"{path}.webhooks"),
    )
