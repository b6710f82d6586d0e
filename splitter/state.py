"""The live state the request path reads, and the state file that outlives the process.

Rules:

- `Live` is an immutable snapshot: the config, the weights in force and everything the
  request path derives from them (pool lookup tables, the cookie signer, the pre-built
  Set-Cookie attributes). A change (admin call, reload) builds a new `Live` and swaps the
  one reference the proxy holds: a request reads `server.live` once and finishes on it.
- Backend health (`BackendHealth`, one per URL in a `HealthTable`) is shared from one
  snapshot to the next and changes under a snapshot, not with it; `Live.refresh_health`
  updates the cached views. (The keep-alive connections, by URL too, belong to the proxy.)
- Shadow traffic (docs/shadow.md): the route's `shadow` in force (the file's, or what
  the admin API or a rollout's test step put in force: `build_live(shadows=...)`) becomes
  a `ShadowPlan` on every pool of the route but the shadow pool itself, so that the
  request path finds it on the pool the weights chose, with one attribute read.
- The state file is JSON, written atomically (write, fsync, rename): `{"version": 1,
  "cookie_secret": hex, ...}`. An unreadable file or one of an unknown version is set
  aside (renamed with a `.bad-<time>` suffix) and a fresh one is started.
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from splitter.config import Backend, Config, Pool, Route, Shadow
from splitter.routetable import RouteTable, SegmentMatcher
from splitter.routing import BackendBalancer, ClientIds, PoolChooser, route_salt

log = logging.getLogger("splitter.state")

STATE_VERSION = 1


class BackendHealth:
    """The health of one backend, shared by URL across snapshots (a reload keeps it).

    `up` is what routing uses: the active checks say so (`checked_up`) and passive
    ejection (`ejected_until`, after failures in a row) does not object.
    """

    __slots__ = ("checked_up", "ejected_until", "ejections", "failures", "up")

    def __init__(self) -> None:
        self.up = True
        self.checked_up = True
        self.ejected_until = 0.0
        self.ejections = 0  # in a row; each one lasts twice as long as the one before
        self.failures = 0  # gateway failures in a row (connect, reset, 502-504, timeout)

    def update(self, now: float) -> bool:
        """Recompute `up`; True when it changed."""
        up = self.checked_up and now >= self.ejected_until
        changed = up != self.up
        self.up = up
        return changed


class HealthTable:
    """Every backend's health by URL, for the snapshots of one process."""

    def __init__(self) -> None:
        self.by_url: dict[str, BackendHealth] = {}

    def get(self, url: str) -> BackendHealth:
        health = self.by_url.get(url)
        if health is None:
            health = self.by_url[url] = BackendHealth()
        return health

    def set_checked(self, url: str, up: bool, now: float) -> bool:
        """The active checks' verdict for `url`; True when `up` changed."""
        health = self.get(url)
        health.checked_up = up
        return health.update(now)

    def retain(self, urls: set[str]) -> None:
        for url in [u for u in self.by_url if u not in urls]:
            del self.by_url[url]


class BackendState:
    """One backend as the request path sees it."""

    __slots__ = ("backend", "health", "url")

    def __init__(self, backend: Backend, health: BackendHealth) -> None:
        self.backend = backend
        self.health = health  # shared by URL across snapshots
        self.url = backend.url

    @property
    def up(self) -> bool:
        return self.health.up


class PoolState:
    """One pool as the request path sees it; health flags are cached, not recomputed."""

    __slots__ = (
        "backends", "balancer", "key", "live", "name", "pool", "route", "shadow", "single",
        "up_flags",
    )  # fmt: skip

    def __init__(self, pool: Pool, backends: list[BackendState], route: str) -> None:
        self.pool = pool
        self.name = pool.name
        self.route = route
        self.key = f"{route}/{pool.name}"  # the statistics' key (`Observation.pool_key`)
        self.backends = backends
        self.balancer = BackendBalancer([b.backend.weight for b in backends])
        self.up_flags: list[bool] | None = None  # None: every backend is up
        self.single = backends[0] if len(backends) == 1 else None
        self.live = True
        # The route's shadow for the requests the weights send to this pool (None: none,
        # or this is the shadow pool).
        self.shadow: ShadowPlan | None = None
        self.refresh_health()

    def refresh_health(self) -> None:
        """Call after a backend's `up` changed."""
        flags = [b.up for b in self.backends]
        self.up_flags = None if all(flags) else flags
        self.live = any(flags)

    def pick(self) -> BackendState | None:
        if self.single is not None and self.up_flags is None:
            return self.single
        index = self.balancer.pick(self.up_flags)
        return None if index is None else self.backends[index]

    def pick_other(self, exclude: BackendState) -> BackendState | None:
        index = self.balancer.pick_other(self.backends.index(exclude), self.up_flags)
        return None if index is None else self.backends[index]

    def has_live_backend(self) -> bool:
        return self.live

    def has_checked_backend(self) -> bool:
        """A backend passes its active health checks (passive ejection aside)."""
        return any(b.health.checked_up for b in self.backends)


class ShadowPlan:
    """A route's shadow traffic in force, as the request path reads it: which pool gets
    the copies (and the reference), how many, of which methods."""

    __slots__ = (
        "config", "key", "max_per_address", "methods", "pool", "reference", "route", "share"
    )  # fmt: skip

    def __init__(self, config: Shadow, route: Route, pools: Mapping[str, PoolState]) -> None:
        self.config = config
        self.route = route.name
        # Copies one client address may cause per second (section 8's bound on a client's
        # say: docs/rollouts.md#evidence-no-client-can-steer).
        self.max_per_address = route.rollouts.analysis.max_per_address
        self.share = config.share
        self.methods = frozenset(m.encode() for m in config.methods)
        self.pool = pools[config.pool]
        self.reference = pools[config.reference] if config.reference is not None else None
        self.key = f"{route.name}/{config.pool}"  # its tally's key


class RouteState:
    """One route as the request path sees it: its pools, the weights in force, the pool
    choice over them and its segments (docs/configuration.md#routes-and-segments)."""

    __slots__ = (
        "chooser", "live_pools", "name", "no_pool_key", "pools", "route", "salt", "segments",
        "shadow", "weights",
    )  # fmt: skip

    def __init__(
        self,
        route: Route,
        weights: Mapping[str, float],
        health: HealthTable,
        shadow: Shadow | None = None,
    ) -> None:
        self.route = route
        self.name = route.name
        self.no_pool_key = f"{route.name}/none"  # its requests no pool could take
        self.pools: dict[str, PoolState] = {}
        for pool in route.pools:
            backends = [BackendState(b, health.get(b.url)) for b in pool.backends]
            self.pools[pool.name] = PoolState(pool, backends, route.name)
        self.weights = tuple((p.name, weights.get(p.name, p.weight)) for p in route.pools)
        self.segments = SegmentMatcher(route.segments) if route.segments else None
        # Pools with a live backend; None when all are (routing then skips the filter).
        self.live_pools: set[str] | None = None
        # Pool choice over the weights and live pools of this moment (rebuilt on change),
        # salted by the route's name: independent of the other routes' choices.
        self.salt = route_salt(route.name)
        self.chooser = PoolChooser(self.weights, None, self.salt)
        # The shadow in force (None: no shadow); copies are made while its share is > 0.
        self.shadow = shadow
        if shadow is not None and shadow.share > 0 and shadow.pool in self.pools:
            if shadow.reference is None or shadow.reference in self.pools:
                plan = ShadowPlan(shadow, route, self.pools)
                for state in self.pools.values():
                    if state.name != shadow.pool:
                        state.shadow = plan

    def weight_map(self) -> dict[str, float]:
        return dict(self.weights)

    def refresh_health(self) -> None:
        for pool in self.pools.values():
            pool.refresh_health()
        names = {name for name, p in self.pools.items() if p.live}
        self.live_pools = None if len(names) == len(self.pools) else names
        self.chooser = PoolChooser(self.weights, self.live_pools, self.salt)

    def has_other_live(self, health: BackendHealth) -> bool:
        """Whether a backend other than this one is live in a pool with weight > 0."""
        return any(
            b.up and b.health is not health
            for name, weight in self.weights
            if weight > 0
            for b in self.pools[name].backends
        )

    def serves(self, health: BackendHealth) -> bool:
        return any(b.health is health for p in self.pools.values() for b in p.backends)


# The weights in force, per route: route name -> pool name -> weight. A route (or pool)
# missing from it has its config weights.
RouteWeights = Mapping[str, Mapping[str, float]]
# The shadow in force per route, where it is not the file's: route name -> the shadow, or
# None for "stopped" (DELETE /api/v1/shadow).
RouteShadows = Mapping[str, Shadow | None]


@dataclass(slots=True)
class Live:
    config: Config
    routes: tuple[RouteState, ...]
    table: RouteTable
    # The route of every request when there is one route matching every request (a config
    # with the top-level pools): the route table is not consulted.
    only: RouteState | None
    client_ids: ClientIds | None  # None: sticky is off
    cookie_name: str
    set_cookie_prefix: bytes  # "Set-Cookie: NAME="
    set_cookie_attrs: bytes  # "; Path=/; HttpOnly; SameSite=Lax; Max-Age=N"
    override_header: bytes | None  # lower-case header name
    segment_headers: frozenset[bytes]  # lower-case names the segments read

    def route(self, name: str) -> RouteState | None:
        for r in self.routes:
            if r.name == name:
                return r
        return None

    @property
    def main(self) -> RouteState | None:
        """The route the calls without a route act on (see `Config.main_route`)."""
        main = self.config.main_route
        return None if main is None else self.route(main.name)

    def refresh_health(self) -> None:
        """Call after a backend's `up` changed: recompute the cached health views."""
        for route in self.routes:
            route.refresh_health()

    def backends(self) -> list[BackendState]:
        return [b for r in self.routes for pool in r.pools.values() for b in pool.backends]

    def route_has_other_live(self, health: BackendHealth) -> bool:
        """Whether every route this backend serves has another live backend in a pool with
        weight > 0 (passive ejection never takes a route's last one)."""
        return all(r.has_other_live(health) for r in self.routes if r.serves(health))


def build_live(
    config: Config,
    weights: RouteWeights,
    cookie_secret: bytes,
    health: HealthTable,
    shadows: RouteShadows | None = None,
) -> Live:
    """A snapshot for `config` with `weights` (and `shadows`) in force, sharing backend
    health by URL."""
    shadows = shadows or {}
    routes = tuple(
        RouteState(
            r,
            weights.get(r.name, {}),
            health,
            shadows[r.name] if r.name in shadows else r.shadow,
        )
        for r in config.routes
    )
    health.retain({b.url for r in config.routes for p in r.pools for b in p.backends})
    sticky = config.sticky
    client_ids = None
    cookie_name = ""
    attrs = b""
    if sticky is not None:
        secret = sticky.secret.encode() if sticky.secret else cookie_secret
        client_ids = ClientIds(secret)
        cookie_name = sticky.cookie
        attrs = b"; Path=/; HttpOnly; SameSite=Lax; Max-Age=%d" % sticky.max_age
    override = config.override.header.lower().encode() if config.override else None
    first = config.routes[0]
    everything = len(config.routes) == 1 and not first.hosts and first.path_prefix == "/"
    live = Live(
        config=config,
        routes=routes,
        table=RouteTable(config.routes),
        only=routes[0] if everything else None,
        client_ids=client_ids,
        cookie_name=cookie_name,
        set_cookie_prefix=b"Set-Cookie: " + cookie_name.encode() + b"=",
        set_cookie_attrs=attrs,
        override_header=override,
        segment_headers=frozenset(
            name for r in routes if r.segments is not None for name in r.segments.header_names
        ),
    )
    live.refresh_health()
    return live


class StateFile:
    """The JSON file that keeps what must survive a restart."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.data: dict[str, Any] = {"version": STATE_VERSION}

    def load(self) -> None:
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return
        except OSError as exc:
            log.error(
                "state file %s cannot be read (%s); starting from the config",
                self.path,
                exc.strerror,
            )
            return
        try:
            data = orjson.loads(raw)
            if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
                raise ValueError("unknown version")
        except ValueError as exc:
            aside = f"{self.path}.bad-{int(time.time())}"
            try:
                os.replace(self.path, aside)
            except OSError:
                aside = "(could not be renamed)"
            log.error("state file %s is not usable (%s); set aside as %s", self.path, exc, aside)
            return
        self.data = data

    def cookie_secret(self) -> bytes:
        """The generated cookie key, made and saved on first use."""
        value = self.data.get("cookie_secret")
        if isinstance(value, str):
            try:
                return bytes.fromhex(value)
            except ValueError:
                pass
        secret = secrets.token_bytes(32)
        self.data["cookie_secret"] = secret.hex()
        self.save()
        return secret

    def save(self) -> None:
        """Write atomically: a crash leaves the old file or the new one, never half.

        The temporary file is made by mkstemp in the same directory: a name nobody can
        guess, created with O_EXCL (a file or link planted there is never followed) and
        mode 0600. It is written and fsynced, renamed over the path (which replaces a link
        there rather than writing through it), and removed when anything fails."""
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        payload = orjson.dumps(self.data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
        name = os.path.basename(self.path)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
        try:
            with open(fd, "wb") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        try:
            dir_fd = os.open(directory, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
