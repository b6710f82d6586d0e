"""splitter/admin/routes.py: the route table is the admin listener's routes, the metrics
listener's, and the OpenAPI document's paths, and its flags say what the server does."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from splitter.admin.openapi import error_statuses
from splitter.admin.routes import OPENAPI, ROUTES, make_admin_app, make_metrics_app
from tests.admin.test_dashboard import TOKEN, make_host


def registered(app: web.Application) -> set[tuple[str, str]]:
    out = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        out.add((route.method, info.get("path") or info.get("formatter") or ""))
    return out


def in_table(metrics_only: bool = False) -> set[tuple[str, str]]:
    out = set()
    for route in ROUTES:
        if metrics_only and not route.metrics:
            continue
        out.add((route.method, route.path))
        if route.head:
            out.add(("HEAD", route.path))
    return out


def test_every_route_of_the_admin_app_is_in_the_table_and_back(tmp_path: Path) -> None:
    app = make_admin_app(make_host(tmp_path))  # type: ignore[arg-type]
    assert registered(app) == in_table()
    assert len(ROUTES) == len({(r.method, r.path) for r in ROUTES})  # each once


def test_the_metrics_listener_serves_the_probes_and_metrics_only(tmp_path: Path) -> None:
    app = make_metrics_app(make_host(tmp_path))  # type: ignore[arg-type]
    assert registered(app) == in_table(metrics_only=True)
    assert {path for _, path in registered(app)} == {"/metrics", "/healthz", "/readyz"}


def test_the_document_has_every_documented_route_with_its_statuses() -> None:
    described = {(method.upper(), path) for path, ops in OPENAPI["paths"].items() for method in ops}
    assert described == {(r.method, r.path) for r in ROUTES if r.documented}
    assert {r.path for r in ROUTES if not r.documented} == {"/", "/dashboard/{name}"}
    for route in ROUTES:
        if route.documented:
            op = OPENAPI["paths"][route.path][route.method.lower()]
            statuses = {int(s) for s in op["responses"]}
            assert statuses == {route.status, *route.also, *error_statuses(route)}, route.path
            assert ("security" not in op) == route.auth, route.path


def test_only_reads_are_gets_and_no_get_changes_anything() -> None:
    for route in ROUTES:
        assert route.changes == (route.method != "GET"), route.path


def test_auth_says_which_routes_the_token_guards(tmp_path: Path) -> None:
    """With admin.token set and no credentials: 401 exactly on the routes marked auth."""

    async def main() -> None:
        app = make_admin_app(make_host(tmp_path, TOKEN))  # type: ignore[arg-type]
        async with TestClient(TestServer(app)) as client:
            for route in ROUTES:
                path = route.path.replace("{name}", "main.js")
                response = await client.request(route.method, path, json=None)
                assert (response.status == 401) == route.auth, (route.path, response.status)
                response.release()

    asyncio.run(main())
