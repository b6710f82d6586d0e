"""An aiohttp backend for the shadow-traffic tests: one version of a small JSON service.

    python -m tests.backends.shadow_app --port 5401 --pool blue --price 10 [--noise] [--delay S]
                                        [--name TEXT]

Routes (every answer carries `X-Pool`):
    GET  /healthz          -> "ok" (never delayed)
    ANY  /item/<id>        -> JSON {"id", "price", "name", "generated_at", "stock"}: `price`
                              from --price, `name` from --name (default "widget"),
                              `generated_at` the time (differs on every answer),
                              `stock` random per answer with --noise, else 5
    GET  /big?size=N       -> N bytes of text/plain
    GET  /status/<code>    -> that status, JSON {"status": code}
    GET  /cookie           -> Set-Cookie: session=<pool> and Authorization-like header
    GET  /seen             -> JSON [[method, path_qs, X-Splitter-Shadow or null, body
                              length, X-Request-Id], ...]: every request but /healthz and
                              /seen, oldest first
With --delay S every request but /healthz and /seen waits S seconds first.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time

from aiohttp import web

POOL = web.AppKey("pool", str)
SEEN = web.AppKey("seen", list)
OPTIONS = web.AppKey("options", argparse.Namespace)


async def handle(request: web.Request) -> web.StreamResponse:
    app = request.app
    pool = app[POOL]
    headers = {"X-Pool": pool}
    path = request.path
    if path == "/healthz":
        return web.Response(text="ok", headers=headers)
    if path == "/seen":
        return web.json_response(app[SEEN], headers=headers)
    body = await request.read()
    app[SEEN].append(
        [
            request.method,
            request.path_qs,
            request.headers.get("X-Splitter-Shadow"),
            len(body),
            request.headers.get("X-Request-Id"),
        ]
    )
    options = app[OPTIONS]
    if options.delay:
        await asyncio.sleep(options.delay)
    if path.startswith("/item/"):
        data = {
            "id": path.removeprefix("/item/"),
            "price": options.price,
            "name": options.name,
            "generated_at": time.time(),
            "stock": random.randrange(1_000_000) if options.noise else 5,
        }
        return web.json_response(data, headers=headers)
    if path == "/big":
        return web.Response(text="x" * int(request.query.get("size", "0")), headers=headers)
    if path.startswith("/status/"):
        code = int(path.removeprefix("/status/"))
        return web.json_response({"status": code}, status=code, headers=headers)
    if path == "/cookie":
        headers["Set-Cookie"] = f"session={pool}-secret"
        return web.json_response({"ok": True}, headers=headers)
    return web.json_response({"path": path}, headers=headers)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pool", required=True)
    parser.add_argument("--price", type=int, default=10)
    parser.add_argument("--noise", action="store_true")
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--name", default="widget")
    options = parser.parse_args()
    app = web.Application()
    app[POOL] = options.pool
    app[SEEN] = []
    app[OPTIONS] = options
    app.router.add_route("*", "/{tail:.*}", handle)
    web.run_app(app, host="127.0.0.1", port=options.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
