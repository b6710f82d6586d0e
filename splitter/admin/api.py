"""The admin listener: the HTTP API of docs/admin-api.md, /healthz, /readyz and /metrics.

Thin handlers over `Controller` (changes) and the live state (reads). Rules:

- JSON in and out; every error is `{"error": "..."}` with a 4xx code and changes nothing.
- Before anything else (`refusal`, the first middleware), 403: without `admin.token`, a
  request whose Host is not `localhost`, 127.0.0.0/8 or `[::1]` (any port), on every
  path: a DNS-rebinding page names its own host. Whatever the token, a request that may
  change something (any method but GET, HEAD, OPTIONS) with an `Origin` other than
  `http://<its Host>`: a page of another site (a text/plain form needs no preflight).
- With `admin.token` set, every `/api/` request needs `Authorization: Bearer TOKEN`
  (compared in constant time), else 401; the dashboard's session cookie may stand in for
  it (`OTHER_AUTH`, see live.py). Wrong tokens (here and in a sign-in) are counted per
  client address (`GUESSES`, sessions.Guesses): the 10th within a minute gets that
  address 429 with Retry-After for a minute, on every token check; other addresses
  are never held up.
- Bodies over 64 KiB: 413. A method an endpoint does not take: 405. A GET changes nothing.
- A change the shared store cannot take (it is down): 503 `{"error": "store unavailable"}`,
  nothing changed. Reads answer the state last known, whatever the store.
- Never served on the proxy listener (it is another socket, another server).
- Errors are raised (`errors.AdminError`: ApiError, WeightError, RolloutError; the
  store's StoreError) and answered in one place, `errors_as_json`.
- The routes and the apps are in `admin.routes` (the table); the metrics listener's app
  serves /metrics, /healthz and /readyz only, with neither the Host rule nor a token.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import math
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import orjson
from aiohttp import web

from splitter.admin.sessions import Guesses
from splitter.config import Config, Segment
from splitter.control.controller import EventLog, plain, weight_value
from splitter.control.route import RouteControl
from splitter.control.shadow import last_pool
from splitter.errors import AdminError, ApiError, ConfigError, RolloutError, StoreError
from splitter.rollout.machine import ABORT_WAY
from splitter.rollout.plan import parse_rollout
from splitter.shadow import Tally
from splitter.state import Live

log = logging.getLogger("splitter.admin")


class Rendered(Protocol):
    def render(self) -> bytes: ...


class AdminHost(Protocol):
    """What the admin API needs of the running splitter (`app.Splitter` is one)."""

    @property
    def main(self) -> RouteControl | None: ...
    @property
    def events(self) -> EventLog: ...
    @property
    def metrics(self) -> Rendered: ...
    @property
    def stopping(self) -> bool: ...
    @property
    def config(self) -> Config: ...
    @property
    def live(self) -> Live | None: ...

    def route_control(self, name: str) -> RouteControl | None: ...
    def route_controls(self) -> list[RouteControl]: ...
    def catch_up_with_file(self) -> None: ...
    def backend_up(self, url: str) -> bool: ...
    def reload(self, source: str) -> ConfigError | None: ...
    def is_ready(self) -> bool: ...


MAX_BODY = 64 * 1024

SPLITTER_KEY: web.AppKey[AdminHost] = web.AppKey("splitter")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Another way to authenticate an /api/ request while admin.token is set (the dashboard's
# session cookie, see live.py): True, authenticated; a response, refused with it; None,
# the bearer token decides.
OtherAuth = Callable[[web.Request], web.StreamResponse | bool | None]
OTHER_AUTH: web.AppKey[OtherAuth] = web.AppKey("other_auth")
# Wrong tokens by client address, for the bearer header and the dashboard's sign-in.
GUESSES: web.AppKey[Guesses] = web.AppKey("guesses")


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def error(status: int, message: str, **extra: Any) -> web.Response:
    return json_response({"error": message, **extra}, status=status)


# -- who may talk to the admin listener -------------------------------------------------

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_AUTHORITY = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^\[\]:]+)(?::[0-9]{1,5})?")
_LOOPBACK_V4 = ipaddress.IPv4Network("127.0.0.0/8")
_LOOPBACK_V6 = ipaddress.IPv6Address("::1")


def is_loopback_authority(value: str) -> bool:
    """A Host value for this machine: `localhost` (any case), 127.0.0.0/8 in dotted-quad
    form or `[::1]`, with or without a port. Any other name may resolve anywhere."""
    match = _AUTHORITY.fullmatch(value) if value.isascii() else None
    if match is None:
        return False
    host = match[1]
    if host.lower() == "localhost":
        return True
    try:
        if host.startswith("["):
            return ipaddress.IPv6Address(host[1:-1]) == _LOOPBACK_V6
        return ipaddress.IPv4Address(host) in _LOOPBACK_V4
    except ValueError:
        return False


def refusal(
    method: str, hosts: Sequence[str], origins: Sequence[str], token_set: bool
) -> str | None:
    """Why the admin listener refuses a request with 403 (docs/admin-api.md), or None.

    `hosts` and `origins` are every value of the request's Host and Origin headers."""
    if not token_set and not (len(hosts) == 1 and is_loopback_authority(hosts[0])):
        return "without admin.token, only a Host of localhost, 127.0.0.0/8 or [::1] is served"
    if method not in SAFE_METHODS and origins:
        own = len(hosts) == 1 and len(origins) == 1
        if not (own and origins[0].lower() == f"http://{hosts[0]}".lower()):
            return "a change from another origin is refused (Origin must be http://<Host>)"
    return None


@web.middleware
async def host_and_origin(request: web.Request, handler: Handler) -> web.StreamResponse:
    """`refusal` before any other middleware: before routing, the body and the token."""
    reason = refusal(
        request.method,
        request.headers.getall("Host", []),
        request.headers.getall("Origin", []),
        bool(request.app[SPLITTER_KEY].config.admin.token),
    )
    if reason is not None:
        return error(403, reason)
    return await handler(request)


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The one place where errors become answers: our AdminErrors (ApiError, WeightError,
    RolloutError), the store's, and aiohttp's own 404/405/413, as `{"error": ...}`."""
    try:
        return await handler(request)
    except AdminError as exc:
        return error(exc.status, str(exc), **exc.extra)
    except StoreError as exc:  # the store cannot be reached: nothing was changed
        return error(exc.status, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error(exc.status, exc.reason.lower())
        allow = exc.headers.get("Allow")
        if allow:
            response.headers["Allow"] = allow
        return response


def client_address(request: web.Request) -> str:
    """The connection's peer (never a header a client could set)."""
    return request.remote or "?"


def too_many_guesses(request: web.Request) -> web.Response | None:
    """429 with Retry-After while the client's address is locked out, else None."""
    wait = request.app[GUESSES].retry_after(client_address(request))
    if wait <= 0:
        return None
    response = error(429, "too many wrong tokens from this address: try again later")
    response.headers["Retry-After"] = str(math.ceil(wait))
    return response


def wrong_token(request: web.Request, how: str) -> None:
    """Count a wrong token against the client's address; log its lockout."""
    client = client_address(request)
    if request.app[GUESSES].failed(client):
        log.warning("%s: too many wrong tokens from %s; refused (429) for a minute", how, client)


@web.middleware
async def bearer_token(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = request.app[SPLITTER_KEY].config.admin.token
    if token and request.path.startswith("/api/"):
        other = request.app.get(OTHER_AUTH)
        verdict = other(request) if other is not None else None
        if verdict is True:
            return await handler(request)
        if isinstance(verdict, web.StreamResponse):
            return verdict
        if (refused := too_many_guesses(request)) is not None:
            return refused
        given_header = request.headers.get("Authorization")
        scheme, _, given = (given_header or "").partition(" ")
        # Header bytes that are not UTF-8 arrive as surrogates: compare bytes, never fail.
        ok = scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode("utf-8", "surrogateescape"), token.encode()
        )
        if not ok:
            if given_header is not None:  # a token was tried (none at all is no guess)
                wrong_token(request, "bearer token")
            response = error(401, "missing or wrong bearer token")
            response.headers["WWW-Authenticate"] = 'Bearer realm="splitter"'
            return response
    return await handler(request)


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object, or a 4xx HTTPException (turned into JSON above)."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=request.content_length)
    raw = await request.read()  # client_max_size caps a body without Content-Length
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        # orjson refuses NaN, Infinity and numbers out of range (1e400) here too.
        raise ApiError(400, "the body is not valid JSON (numbers must be finite)") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    return data


# -- handlers ---------------------------------------------------------------------------


def route_of(request: web.Request) -> RouteControl:
    """The route a call acts on: the one its path names (/api/v1/routes/{route}/..., 404
    when there is none of that name), else the main route (`default`, or the only route;
    400 with several routes and no `default`)."""
    splitter = request.app[SPLITTER_KEY]
    name = request.match_info.get("route")
    if name is not None:
        route = splitter.route_control(name)
        if route is None:
            raise ApiError(404, f"unknown route: {name[:64]}")
        return route
    main = splitter.main
    if main is None:
        names = ", ".join(r.name for r in splitter.config.routes)
        raise ApiError(
            400,
            f"several routes and none named default ({names}): name one, "
            "/api/v1/routes/{route}/...",
        )
    return main


async def get_weights(request: web.Request) -> web.Response:
    return json_response(plain(route_of(request).controller.weights))


async def put_weights(request: web.Request) -> web.Response:
    splitter = request.app[SPLITTER_KEY]
    route = route_of(request)
    body = await read_json_object(request)
    if not body:
        raise ApiError(400, "name at least one pool")
    for name, value in body.items():  # every value is checked before any pool name
        weight_value(name, value)
    splitter.catch_up_with_file()
    _refuse_during_rollout(route)
    weights = await route.controller.set_weights(body)
    return json_response(plain(weights))


def _refuse_during_rollout(route: RouteControl) -> None:
    """A manual change during a rollout would fight it: 409 (abort or pause it first)."""
    active = route.rollouts.active
    if active is not None:
        raise ApiError(
            409,
            f"a rollout of {active.plan.pool} is active: abort it first "
            "(or let it finish); its weights change by themselves",
        )


# -- shadow traffic (docs/shadow.md) ------------------------------------------------------


def shadow_json(route: RouteControl) -> dict[str, Any]:
    """The route's shadow in force and the tally of its pool (once stopped, of the pool
    last stopped, or the file's, so that what was compared stays in view)."""
    shadow = route.shadow_in_force()
    pool = shadow.pool if shadow is not None else None
    config_route = route.controller.route
    shown = pool
    if shown is None and config_route is not None:
        shown = last_pool(route.controller.doc, config_route)
    tally = route.shadow_tally(shown).to_json() if shown is not None else Tally().to_json()
    return {
        "pool": pool,
        "share": shadow.share if shadow is not None else 0,
        "reference": shadow.reference if shadow is not None else None,
        **tally,
    }


async def get_shadow(request: web.Request) -> web.Response:
    return json_response(shadow_json(route_of(request)))


async def put_shadow(request: web.Request) -> web.Response:
    splitter = request.app[SPLITTER_KEY]
    route = route_of(request)
    body = await read_json_object(request)
    if not body:
        raise ApiError(400, "name what to change: share, pool or reference")
    splitter.catch_up_with_file()
    _refuse_during_shadow_step(route)
    await route.shadow.set(body, route.shadow_in_force())
    return json_response(shadow_json(route))


async def delete_shadow(request: web.Request) -> web.Response:
    splitter = request.app[SPLITTER_KEY]
    route = route_of(request)
    splitter.catch_up_with_file()
    _refuse_during_shadow_step(route)
    await route.shadow.stop(route.shadow_in_force())
    return json_response(shadow_json(route))


def _refuse_during_shadow_step(route: RouteControl) -> None:
    """A rollout's test step decides the shadow while it is on: 409."""
    if route.shadow_step() is not None:
        raise ApiError(
            409,
            "a rollout's test step is shadowing this route: abort or promote the rollout "
            "first (or let the step end)",
        )


async def post_switch(request: web.Request) -> web.Response:
    splitter = request.app[SPLITTER_KEY]
    route = route_of(request)
    body = await read_json_object(request)
    unknown = set(body) - {"pool"}
    if unknown or "pool" not in body:
        raise ApiError(400, 'the body must be {"pool": NAME}')
    splitter.catch_up_with_file()
    _refuse_during_rollout(route)
    weights, previous = await route.controller.switch(body["pool"])
    return json_response({"weights": plain(weights), "previous": plain(previous)})


async def get_pools(request: web.Request) -> web.Response:
    splitter = request.app[SPLITTER_KEY]
    route = route_of(request)
    weights = route.controller.weights
    config = route.controller.route
    out: dict[str, Any] = {}
    for pool in config.pools if config is not None else ():
        out[pool.name] = {
            "weight": plain({"w": weights.get(pool.name, 0.0)})["w"],
            "backends": [
                {
                    "url": b.url,
                    "weight": plain({"w": b.weight})["w"],
                    "up": splitter.backend_up(b.url),
                }
                for b in pool.backends
            ],
        }
    return json_response(out)


async def get_routes(request: web.Request) -> web.Response:
    """Every route in config order: how it is chosen, its weights, segments and rollout."""
    splitter = request.app[SPLITTER_KEY]
    out: dict[str, Any] = {}
    for route in splitter.config.routes:
        control = splitter.route_control(route.name)
        if control is None:
            continue
        rollout = control.rollouts.get()
        out[route.name] = {
            "hosts": list(route.hosts),
            "path_prefix": route.path_prefix,
            "weights": plain(control.controller.weights),
            "segments": [segment_json(s) for s in route.segments],
            "rollout": control.rollout_json(rollout.to_json()) if rollout is not None else None,
        }
    return json_response(out)


def segment_json(segment: Segment) -> dict[str, Any]:
    """A segment as the config writes it."""
    if segment.kind == "source":
        return {"pool": segment.pool, "source": list(segment.source)}
    match: dict[str, str] = {"name": segment.name}
    if segment.value is not None:
        match["value"] = segment.value
    return {"pool": segment.pool, segment.kind: match}


async def post_reload(request: web.Request) -> web.Response:
    splitter = request.app[SPLITTER_KEY]
    failure = splitter.reload("api")
    if failure is not None:
        raise ApiError(422, "invalid config", errors=failure.lines())
    main = splitter.main
    weights = plain(main.controller.weights) if main is not None else {}
    return json_response({"status": "reloaded", "weights": weights})


async def get_events(request: web.Request) -> web.Response:
    return json_response({"events": list(request.app[SPLITTER_KEY].events.events)})


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    splitter = request.app[SPLITTER_KEY]
    if splitter.is_ready():
        return json_response({"status": "ready"})
    reason = "shutting down" if splitter.stopping else "no pool with weight > 0 has a live backend"
    return json_response({"status": "not ready", "reason": reason}, status=503)


async def metrics(request: web.Request) -> web.Response:
    body = request.app[SPLITTER_KEY].metrics.render()
    return web.Response(
        body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
    )


# -- rollouts (docs/rollouts.md) ------------------------------------------------------


async def post_rollout(request: web.Request) -> web.Response:
    splitter = request.app[SPLITTER_KEY]
    route = route_of(request)
    body = await read_json_object(request)
    config = route.controller.route
    defaults = config.rollouts if config is not None else splitter.config.rollouts
    try:
        plan = parse_rollout(body, defaults)
    except ConfigError as exc:
        raise ApiError(400, str(exc.problems[0]) if exc.problems else "invalid rollout") from None
    splitter.catch_up_with_file()
    try:
        rollout = await route.rollouts.start(plan)
    except RolloutError as exc:
        named = request.match_info.get("route")
        if named is None or ABORT_WAY not in str(exc):
            raise
        way = (f"splitter ctl --route {route.name} rollout abort, "
               f"or POST /api/v1/routes/{route.name}/rollout/abort")  # fmt: skip
        raise RolloutError(exc.status, str(exc).replace(ABORT_WAY, way), **exc.extra) from None
    return json_response(route.rollout_json(rollout.to_json()), status=201)


async def get_rollout(request: web.Request) -> web.Response:
    route = route_of(request)
    rollout = route.rollouts.get()
    if rollout is None:
        raise ApiError(404, "no rollout has run")
    return json_response(route.rollout_json(rollout.to_json()))


async def get_rollouts(request: web.Request) -> web.Response:
    route = route_of(request)
    return json_response({"rollouts": [route.rollout_json(r) for r in route.rollouts.listing()]})


async def _control(request: web.Request, action: str) -> web.Response:
    route = route_of(request)
    full = False
    if request.can_read_body or request.content_length:
        body = await read_json_object(request)
        allowed = {"full"} if action == "promote" else set()
        unknown = set(body) - allowed
        if unknown:
            raise ApiError(400, f"unknown key: {sorted(unknown)[0]}")
        full = body.get("full", False)
        if not isinstance(full, bool):
            raise ApiError(400, "'full' must be true or false")
    engine = route.rollouts
    if action == "pause":
        rollout = await engine.pause()
    elif action == "resume":
        rollout = await engine.resume()
    elif action == "promote":
        rollout = await engine.promote(full=full)
    else:
        rollout = await engine.abort()
    return json_response(route.rollout_json(rollout.to_json()))


async def post_rollout_pause(request: web.Request) -> web.Response:
    return await _control(request, "pause")


async def post_rollout_resume(request: web.Request) -> web.Response:
    return await _control(request, "resume")


async def post_rollout_promote(request: web.Request) -> web.Response:
    return await _control(request, "promote")


async def post_rollout_abort(request: web.Request) -> web.Response:
    return await _control(request, "abort")
