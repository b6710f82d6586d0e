"""An aiohttp backend for the end-to-end tests (WebSocket echo):

    python -m tests.backends.aio_app --port 5301 --pool blue

Routes: GET / -> the pool name; GET /healthz -> "ok"; GET /ws -> WebSocket echo (text and
binary; a text message "close" makes the server close with code 1000); GET /echo-id -> the
X-Request-Id header value as the body. Every response carries `X-Pool`. Quiet; SIGTERM and
SIGINT stop it (open WebSockets are closed with 1001).
"""

from __future__ import annotations

import argparse

from aiohttp import WSCloseCode, WSMsgType, web

POOL = web.AppKey("pool", str)
SOCKETS = web.AppKey("sockets", set[web.WebSocketResponse])


async def index(request: web.Request) -> web.Response:
    pool = request.app[POOL]
    return web.Response(text=pool, headers={"X-Pool": pool})


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok", headers={"X-Pool": request.app[POOL]})


async def echo_id(request: web.Request) -> web.Response:
    return web.Response(
        text=request.headers.get("X-Request-Id", ""), headers={"X-Pool": request.app[POOL]}
    )


async def ws_echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    ws.headers["X-Pool"] = request.app[POOL]
    await ws.prepare(request)
    request.app[SOCKETS].add(ws)
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                if msg.data == "close":
                    await ws.close(code=WSCloseCode.OK)
                    break
                await ws.send_str(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
            elif msg.type == WSMsgType.ERROR:
                break
    finally:
        request.app[SOCKETS].discard(ws)
    return ws


async def _close_sockets(app: web.Application) -> None:
    for ws in list(app[SOCKETS]):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")


def create_app(pool: str) -> web.Application:
    app = web.Application()
    app[POOL] = pool
    app[SOCKETS] = set()
    app.router.add_get("/", index)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/echo-id", echo_id)
    app.router.add_get("/ws", ws_echo)
    app.on_shutdown.append(_close_sockets)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--pool", default="default")
    args = parser.parse_args(argv)
    web.run_app(
        create_app(args.pool),
        host=args.host,
        port=args.port,
        print=None,
        access_log=None,
        handle_signals=True,
        shutdown_timeout=2.0,
    )


if __name__ == "__main__":
    main()
