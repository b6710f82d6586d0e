"""An extra aiohttp backend for tests/e2e/test_http.py: responses carrying hop-by-hop headers.

    python -m tests.backends.http_extra --port 5401

Routes: GET /healthz -> "ok"; GET /hop -> 200 "hop" with hop-by-hop response headers
(`Connection: X-Hop-Secret`, `X-Hop-Secret`, `Keep-Alive`, `Proxy-Authenticate`, `Trailer`,
`Upgrade`) next to end-to-end ones (`X-End-To-End`, `Cache-Control`).
"""

from __future__ import annotations

import argparse

from aiohttp import web

HOP_HEADERS = {
    "Connection": "X-Hop-Secret",
    "X-Hop-Secret": "backend-internal",
    "Keep-Alive": "timeout=5, max=100",
    "Proxy-Authenticate": 'Basic realm="internal"',
    "Trailer": "X-Checksum",
    "Upgrade": "h2c",
}
END_TO_END_HEADERS = {"X-End-To-End": "kept", "Cache-Control": "no-store"}


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def hop(request: web.Request) -> web.Response:
    return web.Response(text="hop", headers={**HOP_HEADERS, **END_TO_END_HEADERS})


def create_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/hop", hop)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    web.run_app(create_app(), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
