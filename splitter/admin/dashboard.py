"""Live statistics, the event stream, the dashboard page and its sessions
(docs/admin-api.md#live-statistics-and-the-stream).

    GET  /api/v1/stats?window=60          per pool over the last `window` complete seconds
    GET  /api/v1/stats/series?seconds=300 per pool and second: requests and errors (charts)
    GET  /api/v1/stream                   server-sent events from the `Feed`
    GET|POST|DELETE /api/v1/session       the dashboard's cookie session
    GET  /  and  /dashboard/<file>        the page (files of splitter/admin/static/)

`install(app, host)` gives the admin app (`routes.make_admin_app`) the dashboard's state; the
handlers below are in its route table (`admin.routes`), so the admin listener's rules hold
here too: Host and Origin checks first, then the bearer token,
which the session cookie may stand in for (`Dashboard.authenticate`).

Theory of operation:

- Statistics come from `host.window` (stats.Window: one-second buckets, summed over the
  workers, drained every 0.5 s). A second counts once it is surely drained: `LAG` after it
  ended. A window of W seconds is the W complete seconds before that; `rps` divides by W,
  or by the time since the process started when that is shorter.
- A ticker wakes once a second (`TICK_PHASE` past the wall-clock second, just after the
  newest second became complete) and, while anyone listens, publishes `stats` (the body
  of stats?window=10) and `series` (in the shape of /api/v1/stats/series, for the
  charts: the last `SERIES_OVERLAP` seconds, so a
  client that loaded the history a moment before its stream opened misses none). It also
  publishes `weights` when they changed without an event having said so, and `shadow`
  (the body of /api/v1/shadow with "route") for each route that has shadow traffic: a
  shadow pool in force, or copies counted (a stopped shadow's results stay in view);
  once more when a route stops having any, so that a page hides what it showed.
- The controller calls `on_event` with each new event: published as `event`, then
  `weights` once the change is complete (after the call that made it returns).
- A stream client gets `retry:` and the current weights at once, then what the feed
  sends it; a comment line after `HEARTBEAT` seconds of silence keeps idle proxies from
  closing it. A client too slow to read is dropped by the feed (its connection aborted).
  At most `MAX_STREAMS` clients at once, each with a bounded queue.
  A stream opened with a session cookie ends when the session does.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import math
import re
import socket
import time
from importlib import resources
from typing import Any, Final, Protocol

from aiohttp import web

from splitter.admin.api import (
    OTHER_AUTH,
    SAFE_METHODS,
    AdminHost,
    client_address,
    error,
    json_response,
    read_json_object,
    route_of,
    shadow_json,
    too_many_guesses,
    wrong_token,
)
from splitter.admin.bodies import KINDS, MAX_WINDOW
from splitter.admin.sessions import SESSION_TTL, Sessions
from splitter.admin.stream import Dropped, Feed, encode
from splitter.config import ADMIN_COOKIE
from splitter.control.controller import iso_time, plain
from splitter.control.route import RouteControl
from splitter.errors import ApiError
from splitter.observe.stats import (
    ERRORS,
    LATENCY_BOUNDS,
    NO_POOL,
    REQUESTS,
    PoolTotals,
    quantile,
)

log = logging.getLogger("splitter.live")

LAG: Final = 0.75  # a second is complete this long after it ended (drains are 0.5 s apart)
TICK_PHASE: Final = 0.8  # the ticker runs this far into each wall-clock second
STREAM_WINDOW: Final = 10  # the window of the `stats` messages
SERIES_OVERLAP: Final = 5  # seconds in each `series` message: a late client misses none
HEARTBEAT: Final = 10.0  # seconds of silence before a comment line
MAX_STREAMS: Final = 100  # stream clients at once; more get 503
# The kernel's send buffer of a stream connection: small messages need little, and a
# client that stops reading then pins this much kernel memory, not megabytes.
STREAM_SNDBUF: Final = 64 * 1024

COOKIE: Final = ADMIN_COOKIE  # never forwarded by the proxy (http1/request.py)
SESSION_PATH: Final = "/api/v1/session"
CSRF_HEADER: Final = "X-Requested-With"
CSRF_VALUE: Final = "splitter"

# The page's files: name -> content type. Nothing else is served from the folder.
FILES: Final = {
    "index.html": "text/html; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "main.js": "text/javascript; charset=utf-8",
    "api.js": "text/javascript; charset=utf-8",
    "stream.js": "text/javascript; charset=utf-8",
    "chart.js": "text/javascript; charset=utf-8",
    "rollout.js": "text/javascript; charset=utf-8",
    "routes.js": "text/javascript; charset=utf-8",
    "shadow.js": "text/javascript; charset=utf-8",
    "format.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
PAGE_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}


class LiveHost(AdminHost, Protocol):
    """What this module needs of the running splitter, beyond the admin API's needs."""

    @property
    def feed(self) -> Feed: ...
    @property
    def started_at(self) -> float: ...  # wall-clock time of the start
    @property
    def replicas(self) -> int: ...  # live replicas sharing a store (1 without one)


def seconds_param(request: web.Request, name: str, default: int) -> int:
    """A query parameter of whole seconds from 1 to MAX_WINDOW, else ApiError(400)."""
    raw = request.query.get(name)
    if raw is None:
        return default
    if re.fullmatch(r"[0-9]{1,6}", raw) is None or not 1 <= int(raw) <= MAX_WINDOW:
        raise ApiError(400, f"{name} must be a whole number of seconds from 1 to {MAX_WINDOW}")
    return int(raw)


def _ms(seconds: float | None) -> float | None:
    if seconds is None:
        return None
    if math.isinf(seconds):  # beyond the last bucket: say at least that
        seconds = LATENCY_BOUNDS[-1]
    return round(seconds * 1000, 3)


def _numbers(totals: PoolTotals | None, duration: float) -> dict[str, Any]:
    requests = totals.requests if totals is not None else 0
    if totals is None or requests == 0:
        return {"requests": 0, "rps": 0.0, "error_rate": None,
                "p50_ms": None, "p95_ms": None, "p99_ms": None}  # fmt: skip
    histogram = totals.latency()
    return {
        "requests": requests,
        "rps": round(requests / duration, 3) if duration > 0 else 0.0,
        "error_rate": round(totals.errors / requests, 6),
        "p50_ms": _ms(quantile(histogram, 0.50)),
        "p95_ms": _ms(quantile(histogram, 0.95)),
        "p99_ms": _ms(quantile(histogram, 0.99)),
    }


def has_shadow(body: dict[str, Any]) -> bool:
    """Whether a route's shadow (the body of GET /api/v1/shadow) is worth showing: a pool
    gets copies, or copies were counted (compared, skipped or in error)."""
    return body["pool"] is not None or any(
        body[key] > 0 for key in ("compared", "skipped", "errors")
    )


class Dashboard:
    """The statistics, the stream, the sessions and the page of one admin app."""

    def __init__(self, host: LiveHost) -> None:
        self.host = host
        self.feed = host.feed
        self.sessions = Sessions()
        self.files = _load_files()
        self._published_weights: dict[str, dict[str, Any]] = {}  # per route
        self._shadowed: set[str] = set()  # the routes of the last `shadow` messages
        self._ticker: asyncio.Task[None] | None = None

    # -- statistics ---------------------------------------------------------------------

    def pool_names(self, route: RouteControl) -> list[str]:
        """The configured pools, then any other that served requests in the window (a
        pool a reload removed), then "none" (requests refused before a pool was chosen)."""
        config = route.controller.route
        names = [p.name for p in config.pools] if config is not None else []
        known = set(names)
        seen: set[str] = set()
        for pools in route.window.seconds.values():
            seen.update(pools)
        names += sorted(seen - known - {NO_POOL})
        if NO_POOL in seen:
            names.append(NO_POOL)
        return names

    def stats(self, route: RouteControl, window: int, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        end = int(now - LAG)
        totals = route.window.totals(end - window, end)
        duration = min(float(window), end - self.host.started_at)
        answered = sum(t.requests for name, t in totals.items() if name != NO_POOL)
        controller = route.controller
        weights = plain(controller.weights)
        config = controller.route
        config_pools = {p.name: p for p in config.pools} if config is not None else {}
        pools: dict[str, Any] = {}
        for name in self.pool_names(route):
            mine = totals.get(name)
            if name == NO_POOL and name not in config_pools:
                if mine is not None and mine.requests > 0:
                    pools[name] = _numbers(mine, duration)
                continue
            served = mine.requests if mine is not None else 0
            pool = config_pools.get(name)
            backends = pool.backends if pool is not None else ()
            pools[name] = {
                "weight": weights.get(name, 0),
                "share": round(served / answered, 6) if answered else None,
                **_numbers(mine, duration),
                "backends_up": sum(1 for b in backends if self.host.backend_up(b.url)),
                "backends": len(backends),
            }
        out: dict[str, Any] = {
            "at": iso_time(now), "route": route.name, "window": window, "pools": pools
        }  # fmt: skip
        if controller.config.store is not None:  # the statistics are the whole fleet's
            out["replicas"] = self.host.replicas
        return out

    def series(
        self, route: RouteControl, start: int, end: int, now: float | None = None
    ) -> dict[str, Any]:
        """Per pool, requests and errors of each second from `start` up to `end`."""
        now = time.time() if now is None else now
        names = self.pool_names(route)
        length = max(0, end - start)
        out = {n: {"requests": [0] * length, "errors": [0] * length} for n in names}
        for second, row in route.window.series(names, start):
            if second >= end:
                continue
            for name, counts in row.items():
                out[name]["requests"][second - start] = counts[REQUESTS]
                out[name]["errors"][second - start] = counts[ERRORS]
        if NO_POOL in out and not any(out[NO_POOL]["requests"]):
            del out[NO_POOL]
        return {"at": iso_time(now), "route": route.name, "start": start, "seconds": length,
                "pools": out}  # fmt: skip

    # -- the feed -----------------------------------------------------------------------

    def on_event(self, entry: dict[str, Any]) -> None:
        """The controller's hook: every new event, and the weights once it is complete."""
        self.feed.publish("event", entry)
        with contextlib.suppress(RuntimeError):  # no loop: nobody can be listening
            asyncio.get_running_loop().call_soon(self.publish_weights)

    def weights(self) -> dict[str, dict[str, Any]]:
        """Every route's weights in force: the `weights` messages (one per route)."""
        return {
            route.name: {"route": route.name, "weights": plain(route.controller.weights)}
            for route in self.host.route_controls()
        }

    def publish_weights(self) -> None:
        for name, message in self.weights().items():
            if message != self._published_weights.get(name):
                self._published_weights[name] = message
                self.feed.publish("weights", message)

    def tick(self, now: float) -> None:
        self.publish_weights()
        routes = self.host.route_controls()
        if self.feed.wants("stats"):
            for route in routes:
                self.feed.publish("stats", self.stats(route, STREAM_WINDOW, now))
        if self.feed.wants("series"):
            end = int(now - LAG)
            for route in routes:
                self.feed.publish("series", self.series(route, end - SERIES_OVERLAP, end, now))
        if self.feed.wants("shadow"):
            self.publish_shadows(routes)
        else:
            self._shadowed.clear()

    def publish_shadows(self, routes: list[RouteControl]) -> None:
        """A `shadow` message for each route with shadow traffic, and a last one for a
        route that had some at the last tick and has none now."""
        shadowed: set[str] = set()
        for route in routes:
            body = shadow_json(route)
            if has_shadow(body):
                shadowed.add(route.name)
            elif route.name not in self._shadowed:
                continue
            self.feed.publish("shadow", {"route": route.name, **body})
        self._shadowed = shadowed

    async def _run_ticker(self) -> None:
        second = math.floor(time.time() - TICK_PHASE)
        while True:
            second += 1  # once per wall-clock second, never twice (sleeps may end early)
            while (delay := second + TICK_PHASE - time.time()) > 0:
                await asyncio.sleep(delay)
            now = time.time()
            if now - (second + TICK_PHASE) > 1.0:  # fell behind (a stalled loop): catch up
                second = math.floor(now - TICK_PHASE)
            try:
                self.tick(now)
            except Exception:  # a bug here must not stop the stream for good
                log.exception("live statistics: tick failed")

    async def on_startup(self, app: web.Application) -> None:
        self._published_weights = self.weights()
        self._ticker = asyncio.get_running_loop().create_task(self._run_ticker(), name="live")

    async def on_shutdown(self, app: web.Application) -> None:
        self.feed.close()  # streams end now: a stopping server waits for none of them
        if self._ticker is not None:
            self._ticker.cancel()

    # -- sessions -----------------------------------------------------------------------

    def authenticate(self, request: web.Request) -> web.StreamResponse | bool | None:
        """For an /api/ request while admin.token is set: True when the session cookie
        authenticates it (or it is the session endpoint, which checks for itself), a 403
        for a change made with the cookie but without `X-Requested-With: splitter`, None
        to let the bearer token decide."""
        if "Authorization" in request.headers:
            return None
        if request.path == SESSION_PATH and request.method == "POST":
            return True
        session_id = request.cookies.get(COOKIE)
        if not session_id or not self.sessions.valid(session_id):
            return True if request.path == SESSION_PATH and request.method == "DELETE" else None
        if request.method not in SAFE_METHODS and request.headers.get(CSRF_HEADER) != CSRF_VALUE:
            return error(
                403, f"a change made with the session cookie needs {CSRF_HEADER}: {CSRF_VALUE}"
            )
        return True

    def session_of(self, request: web.Request) -> str | None:
        """The live session a request carries, when admin.token is set."""
        if not self.host.config.admin.token:
            return None
        session_id = request.cookies.get(COOKIE)
        return session_id if session_id and self.sessions.valid(session_id) else None


def _load_files() -> dict[str, tuple[bytes, str, str]]:
    """name -> (body, content type, ETag), read once from the package."""
    folder = resources.files("splitter.admin").joinpath("static")
    out = {}
    for name, content_type in FILES.items():
        body = folder.joinpath(name).read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        out[name] = (body, content_type, etag)
    return out


DASHBOARD_KEY: web.AppKey[Dashboard] = web.AppKey("dashboard")


# -- handlers ---------------------------------------------------------------------------


async def get_stats(request: web.Request) -> web.Response:
    route = route_of(request)
    window = seconds_param(request, "window", 60)
    return json_response(request.app[DASHBOARD_KEY].stats(route, window))


async def get_series(request: web.Request) -> web.Response:
    route = route_of(request)
    seconds = seconds_param(request, "seconds", MAX_WINDOW)
    now = time.time()
    end = int(now - LAG)
    return json_response(request.app[DASHBOARD_KEY].series(route, end - seconds, end, now))


def _kinds(request: web.Request) -> frozenset[str] | None:
    raw = request.query.get("kinds")
    if raw is None:
        return None
    kinds = frozenset(k.strip() for k in raw.split(",") if k.strip())
    if not kinds or not kinds <= KINDS:
        raise ApiError(400, f"kinds must name some of: {', '.join(sorted(KINDS))}")
    return kinds


async def get_stream(request: web.Request) -> web.StreamResponse:
    dashboard = request.app[DASHBOARD_KEY]
    kinds = _kinds(request)
    if len(dashboard.feed.subscribers) >= MAX_STREAMS:
        raise ApiError(503, f"too many stream clients (at most {MAX_STREAMS})")
    session_id = dashboard.session_of(request)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # nginx in front: do not buffer the stream
        }
    )
    await response.prepare(request)
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_SNDBUF)
    subscriber = dashboard.feed.subscribe(
        kinds, on_drop=transport.abort if transport is not None else None
    )
    try:
        first = b"retry: 2000\n\n"
        if subscriber.wants("weights"):
            for message in dashboard.weights().values():
                first += encode("weights", message)
        await response.write(first)
        while True:
            batch = await subscriber.next(HEARTBEAT)
            if session_id is not None and not dashboard.sessions.valid(session_id):
                break  # signed out, or expired
            await response.write(b"".join(batch) if batch else b": keep-alive\n\n")
    except (Dropped, ConnectionError):
        pass
    finally:
        dashboard.feed.unsubscribe(subscriber)
    return response


async def get_session(request: web.Request) -> web.Response:
    dashboard = request.app[DASHBOARD_KEY]
    session_id = dashboard.session_of(request)
    left = dashboard.sessions.remaining(session_id) if session_id is not None else None
    return json_response(
        {
            "token_required": bool(dashboard.host.config.admin.token),
            "session": left is not None,
            "expires_at": iso_time(time.time() + left) if left is not None else None,
        }
    )


async def post_session(request: web.Request) -> web.Response:
    dashboard = request.app[DASHBOARD_KEY]
    token = dashboard.host.config.admin.token
    if not token:
        raise ApiError(400, "admin.token is not set: the admin API needs no session")
    if (refused := too_many_guesses(request)) is not None:
        return refused
    client = client_address(request)
    body = await read_json_object(request)
    given = body.get("token")
    if set(body) != {"token"} or not isinstance(given, str):
        raise ApiError(400, 'the body must be {"token": "..."}')
    if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), token.encode()):
        wrong_token(request, "dashboard sign-in")
        log.warning("dashboard sign-in with a wrong token from %s", client)
        raise ApiError(401, "wrong token")
    session_id = dashboard.sessions.create()
    log.info("dashboard session started from %s", client)
    response = web.Response(status=204)
    response.set_cookie(
        COOKIE, session_id, max_age=int(SESSION_TTL), path="/", httponly=True, samesite="Strict"
    )
    return response


async def delete_session(request: web.Request) -> web.Response:
    dashboard = request.app[DASHBOARD_KEY]
    session_id = request.cookies.get(COOKIE)
    if session_id:
        dashboard.sessions.end(session_id)
    response = web.Response(status=204)
    response.del_cookie(COOKIE, path="/", httponly=True, samesite="Strict")
    return response


def _file_response(request: web.Request, name: str) -> web.Response:
    body, content_type, etag = request.app[DASHBOARD_KEY].files[name]
    headers = {**PAGE_HEADERS, "Content-Type": content_type, "ETag": etag}
    if etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, headers=headers)


async def get_page(request: web.Request) -> web.Response:
    return _file_response(request, "index.html")


async def get_file(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in FILES:
        raise web.HTTPNotFound()
    return _file_response(request, name)


def install(app: web.Application, host: LiveHost) -> Dashboard:
    """Give an admin app the dashboard's state: the statistics, the stream's feed and
    ticker, the sessions (the routes are in `admin.routes`)."""
    dashboard = Dashboard(host)
    app[DASHBOARD_KEY] = dashboard
    app[OTHER_AUTH] = dashboard.authenticate
    host.events.listeners.append(dashboard.on_event)
    app.on_startup.append(dashboard.on_startup)
    app.on_shutdown.append(dashboard.on_shutdown)
    return dashboard
