"""The admin listener's one route table, and the apps made from it.

`ROUTES` lists every endpoint of the admin listener (docs/admin-api.md, docs/rollouts.md),
each once: its method and path, handler, words, query, request and response body types
(`admin.bodies`), the error statuses it answers (beyond those every route shares, see
`admin.openapi`), whether it needs the token (`auth`), whether it changes anything
(`changes`), and whether it is also served on the metrics listener. From it:

- `make_admin_app` registers the routes (and installs the dashboard's state);
- `make_metrics_app` registers the routes marked `metrics` (/metrics, /healthz, /readyz);
- `OPENAPI`, the document served at /api/v1/openapi.json, is generated (`openapi.document`);
- the tests take their endpoints from it.

The token rule itself stays a prefix rule (`api.bearer_token`: every /api/ path, so an
unknown one is a 401 too, not a 404 that would tell what exists); `auth` says the same
per route, and a test holds the two together.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

import orjson
from aiohttp import web

from splitter.admin import api, bodies, dashboard
from splitter.admin.api import GUESSES, MAX_BODY, SPLITTER_KEY, AdminHost, Handler
from splitter.admin.dashboard import MAX_STREAMS, LiveHost
from splitter.admin.openapi import Text, document
from splitter.admin.sessions import Guesses
from splitter.config import MAX_WEIGHT

ADMIN: Final = "admin"  # docs/admin-api.md: weights, pools, reload, events, probes, metrics
ROLLOUTS: Final = "rollouts"  # docs/rollouts.md
LIVE: Final = "live"  # statistics, the stream, the dashboard's session (docs/admin-api.md)
PAGE: Final = "page"  # the dashboard page and its files (not in the document)


@dataclass(frozen=True, slots=True)
class Route:
    """One endpoint of the admin listener."""

    method: str
    path: str
    handler: Handler
    operation_id: str
    summary: str
    tag: str
    response: Any = None  # a body type (admin.bodies), a Text, or None: no body
    status: int = 200
    response_words: str = "OK."
    request: Any = None  # the request body's type, or None: it takes no body
    request_required: bool = True
    query: Any = None  # a TypedDict of the query parameters
    errors: Mapping[int, str] = field(default_factory=dict)  # status -> when (Error body)
    also: Mapping[int, tuple[Any, str]] = field(default_factory=dict)  # other answers
    auth: bool = True  # needs the token (or the dashboard's session) when one is set
    changes: bool = False  # may change the weights, a rollout, the config or a session
    head: bool = False  # HEAD is answered too (the probes, /metrics, the page)
    metrics: bool = False  # also served by the metrics listener
    documented: bool = True  # in the OpenAPI document
    description: str = ""
    # Concerns pools: also served under /api/v1/routes/{route}/... for one route; without a
    # route it acts on the main route (docs/admin-api.md#routes).
    per_route: bool = False


ROUTE_PREFIX: Final = "/api/v1/routes/{route}"
_NO_MAIN = "Several routes and none named default: name one (/api/v1/routes/{route}/...)."


def for_one_route(route: Route) -> Route:
    """`route` under /api/v1/routes/{route}/: the same call, for the route named."""
    errors = {**route.errors, 404: _or(route.errors.get(404), "Unknown route.")}
    return replace(
        route,
        path=ROUTE_PREFIX + route.path.removeprefix("/api/v1"),
        operation_id="route" + route.operation_id[0].upper() + route.operation_id[1:],
        summary=route.summary + " (of one route)",
        errors=errors,
        per_route=False,
    )


def _or(first: str | None, second: str) -> str:
    return second if first is None else f"{first} Or: {second}"


_BAD_WEIGHTS = (
    f"The body is not a JSON object of pool name to weight (0 to {MAX_WEIGHT:,}), or names no pool."
)
_STORE_DOWN = {503: "The shared store (store.url) cannot be reached: nothing was changed."}
_BUSY = "A rollout is active: its weights change by themselves (abort it first)."
_NO_ROLLOUT = "No rollout is active (or, for resume, it is not paused)."
_BAD_QUERY = {400: "A query parameter out of range."}


def _control(action: str, handler: Handler, summary: str, options: Any) -> Route:
    return Route(
        "POST", f"/api/v1/rollout/{action}", handler, f"{action}Rollout", summary, ROLLOUTS,
        bodies.Rollout, response_words="The rollout after the call.",
        request=options, request_required=False, changes=True, per_route=True,
        errors={400: "The body has a key it does not take.", 409: _NO_ROLLOUT, **_STORE_DOWN},
    )  # fmt: skip


async def get_openapi(request: web.Request) -> web.Response:
    return web.Response(body=_OPENAPI_BODY, content_type="application/json")


_ROUTES: Final[tuple[Route, ...]] = (
    # -- docs/admin-api.md ---------------------------------------------------------------------
    Route("GET", "/api/v1/weights", api.get_weights, "getWeights", "The weights in force",
          ADMIN, bodies.Weights, response_words="Pool name to weight.", per_route=True),
    Route("PUT", "/api/v1/weights", api.put_weights, "putWeights",
          "Set the named pools' weights; the others keep theirs", ADMIN, bodies.Weights,
          response_words="The full new map.", request=bodies.WeightsChange, changes=True,
          errors={400: _BAD_WEIGHTS, 404: "Unknown pool.",
                  409: f"Every weight would be 0, or: {_BUSY}", **_STORE_DOWN}, per_route=True),
    Route("POST", "/api/v1/switch", api.post_switch, "switch",
          "Blue/green flip: the named pool 100, all others 0", ADMIN, bodies.Switched,
          request=bodies.SwitchRequest, changes=True,
          errors={400: 'The body is not {"pool": NAME}.', 404: "Unknown pool.", 409: _BUSY,
                  **_STORE_DOWN}, per_route=True),
    Route("GET", "/api/v1/shadow", api.get_shadow, "getShadow",
          "The shadow traffic in force and what its copies' answers compared to", ADMIN,
          bodies.Shadow, per_route=True),
    Route("PUT", "/api/v1/shadow", api.put_shadow, "putShadow",
          "Change the shadow's share (or pool, or reference); runtime state like a weight",
          ADMIN, bodies.Shadow, response_words="The shadow after the change.",
          request=bodies.ShadowChange, changes=True,
          errors={400: "A value out of range, an unknown key, or no pool for a route "
                  "without a shadow.", 404: "Unknown pool (pool or reference).",
                  409: "A rollout's test step is shadowing the route.",
                  **_STORE_DOWN}, per_route=True),
    Route("DELETE", "/api/v1/shadow", api.delete_shadow, "deleteShadow",
          "Stop shadowing (until a change, or a config file with another shadow section)",
          ADMIN, bodies.Shadow, response_words="The shadow after the change (pool null).",
          changes=True, errors={409: "A rollout's test step is shadowing the route.",
                                **_STORE_DOWN}, per_route=True),
    Route("GET", "/api/v1/pools", api.get_pools, "getPools",
          "Pools with their weights and backends", ADMIN, bodies.Pools,
          response_words="Pool name to pool.", per_route=True),
    Route("GET", "/api/v1/routes", api.get_routes, "listRoutes",
          "Routes in config order: hosts, path prefix, weights, segments, rollout", ADMIN,
          bodies.Routes, response_words="Route name to route."),
    Route("POST", "/api/v1/reload", api.post_reload, "reload", "Re-read the config file",
          ADMIN, bodies.Reloaded, response_words="The new config is in force.", changes=True,
          errors={422: "The config file is invalid (`errors`: every problem); the old "
                  "config is kept."}),
    Route("GET", "/api/v1/events", api.get_events, "getEvents",
          "The latest changes, oldest first", ADMIN, bodies.Events),
    Route("GET", "/api/v1/openapi.json", get_openapi, "getOpenapi", "This description",
          ADMIN, bodies.OpenApiDocument, response_words="OpenAPI 3."),
    Route("GET", "/healthz", api.healthz, "healthz", "200 while the process runs", ADMIN,
          bodies.Health, response_words="Alive.", auth=False, head=True, metrics=True),
    Route("GET", "/readyz", api.readyz, "readyz",
          "200 when a pool with weight > 0 has a healthy backend", ADMIN, bodies.Readiness,
          response_words="Ready.", also={503: (bodies.Readiness, "Not ready (or shutting down).")},
          auth=False, head=True, metrics=True),
    Route("GET", "/metrics", api.metrics, "metrics", "Prometheus metrics", ADMIN,
          Text("text/plain"), response_words="Prometheus text format.", auth=False,
          head=True, metrics=True),
    # -- docs/rollouts.md ---------------------------------------------------------------------
    Route("POST", "/api/v1/rollout", api.post_rollout, "startRollout",
          "Start a rollout (canary or blue-green)", ROLLOUTS, bodies.Rollout, status=201,
          response_words="The rollout, started.", request=bodies.RolloutStart, changes=True,
          errors={400: "A bad body: an unknown key, steps not rising, a weight out of "
                  "range, a bad duration, an unknown strategy.",
                  404: "Unknown pool.",
                  409: "A rollout is active, or the candidate is the only pool with a "
                  "weight > 0.",
                  **_STORE_DOWN}, per_route=True),
    Route("GET", "/api/v1/rollout", api.get_rollout, "getRollout",
          "The active rollout, else the last one", ROLLOUTS, bodies.Rollout,
          response_words="The rollout.", errors={404: "No rollout has run."}, per_route=True),
    _control("pause", api.post_rollout_pause, "Pause the active rollout (the weights stay)",
             bodies.NoOptions),
    _control("resume", api.post_rollout_resume, "Resume a paused rollout", bodies.NoOptions),
    _control("promote", api.post_rollout_promote,
             "End the current step as passed; with full, promote at once",
             bodies.PromoteOptions),
    _control("abort", api.post_rollout_abort, "Roll back now", bodies.NoOptions),
    Route("GET", "/api/v1/rollouts", api.get_rollouts, "listRollouts",
          "The last 20 rollouts, newest first", ROLLOUTS, bodies.Rollouts, per_route=True),
    # -- live statistics, the stream, the dashboard (docs/admin-api.md) ----------------------
    Route("GET", "/api/v1/stats", dashboard.get_stats, "getStats",
          "Per pool over the last `window` complete seconds", LIVE, bodies.Stats,
          query=bodies.StatsQuery, errors=_BAD_QUERY,
          description="Requests refused before a pool was chosen are under \"none\" (listed "
          "when there are any, not in the shares). Quantiles are null without requests.",
          per_route=True),
    Route("GET", "/api/v1/stats/series", dashboard.get_series, "getStatsSeries",
          "Per pool and second: requests and errors over the last `seconds`", LIVE,
          bodies.Series, query=bodies.SeriesQuery, errors=_BAD_QUERY, per_route=True),
    Route("GET", "/api/v1/stream", dashboard.get_stream, "getStream",
          "Server-sent events: stats, series, weights, event, rollout, shadow", LIVE,
          Text("text/event-stream"), response_words="The stream.", query=bodies.StreamQuery,
          errors={400: "kinds names something else.",
                  503: f"Too many stream clients at once ({MAX_STREAMS})."},
          description="`stats` every second (the body of /api/v1/stats?window=10), `series` "
          "every second (the last 5 seconds, as /api/v1/stats/series), `weights` at once and "
          "on every change, `event` for every new entry of /api/v1/events, `rollout` on "
          "every rollout transition, `shadow` every second for each route with shadow "
          "traffic (the body of /api/v1/shadow with `route`). A comment line after 10 s "
          "of silence. A client that "
          "reads too slowly is dropped. `kinds` keeps only those kinds."),
    Route("GET", "/api/v1/session", dashboard.get_session, "getSession",
          "Whether a token is required, and the session of this request", LIVE,
          bodies.Session),
    Route("POST", "/api/v1/session", dashboard.post_session, "postSession",
          "Trade the admin token for a session cookie (splitter_admin, 12 h)", LIVE,
          status=204, response_words="Signed in: the cookie is set.",
          request=bodies.SessionRequest, auth=False, changes=True,
          errors={400: 'admin.token is not set, or the body is not {"token": "..."}.',
                  401: "Wrong token.",
                  429: "Too many wrong tokens from this address (see Retry-After)."},
          description="Needs no bearer token. Answers 204 with the cookie (HttpOnly, "
          "SameSite=Strict, Path=/); calls made with it that change something need "
          "`X-Requested-With: splitter`."),
    Route("DELETE", "/api/v1/session", dashboard.delete_session, "deleteSession",
          "End the session of the cookie sent", LIVE, status=204,
          response_words="Signed out.", auth=False, changes=True),
    Route("GET", "/", dashboard.get_page, "getPage", "The dashboard page", PAGE,
          Text("text/html"), auth=False, head=True, documented=False),
    Route("GET", "/dashboard/{name}", dashboard.get_file, "getPageFile",
          "A file of the dashboard page", PAGE, Text("text/javascript"), auth=False,
          head=True, documented=False, errors={404: "No such file."}),
)  # fmt: skip

# The table: every endpoint once, then the calls that concern pools under each route's path.
ROUTES: Final[tuple[Route, ...]] = (
    *_ROUTES, *(for_one_route(route) for route in _ROUTES if route.per_route),
)  # fmt: skip
OPENAPI: Final = document(ROUTES)
_OPENAPI_BODY: Final = orjson.dumps(OPENAPI)


def add_routes(app: web.Application, routes: Iterable[Route]) -> None:
    """Register `routes` on `app`, the routes of one path on one resource (so that a
    method the path does not take is a 405 listing those it takes)."""
    by_path: dict[str, list[Route]] = {}
    for route in routes:
        by_path.setdefault(route.path, []).append(route)
    for path, group in by_path.items():
        resource = app.router.add_resource(path)
        for route in group:
            if route.head:
                resource.add_route("HEAD", route.handler)
            resource.add_route(route.method, route.handler)


def make_admin_app(host: LiveHost) -> web.Application:
    """The admin listener's app: the middlewares (Host and Origin first), the dashboard's
    state and every route of the table."""
    middlewares = [api.host_and_origin, api.errors_as_json, api.bearer_token]
    app = web.Application(client_max_size=MAX_BODY, middlewares=middlewares)
    app[SPLITTER_KEY] = host
    app[GUESSES] = Guesses()
    dashboard.install(app, host)
    add_routes(app, ROUTES)
    return app


def make_metrics_app(host: AdminHost) -> web.Application:
    """The `metrics.listen` listener: /metrics, /healthz and /readyz with the admin
    listener's answers, and nothing else (404, or 405 for another method), so it may face
    the network (Prometheus, the kubelet) without a token and without the Host rule: it
    can change nothing and never serves the admin API."""
    app = web.Application(client_max_size=MAX_BODY, middlewares=[api.errors_as_json])
    app[SPLITTER_KEY] = host
    add_routes(app, (route for route in ROUTES if route.metrics))
    return app
