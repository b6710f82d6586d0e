"""`splitter demo`: three small backends and the proxy in front of them, in one process.

The backends are aiohttp apps on loopback (blue, green, canary on the ports the bundled
`demo.yaml` names); each answers `GET /` with its pool name and `GET /healthz` with ok.
Everything else is the real proxy, started exactly as `splitter run` would start it.
"""

from __future__ import annotations

import sys
from importlib import resources

from aiohttp import web

from splitter import app
from splitter.config import Address, Config, load
from splitter.errors import StartupError
from splitter.runtime import bind


def demo_backend(pool: str) -> web.Application:
    async def index(request: web.Request) -> web.Response:
        return web.Response(text=f"{pool}\n", headers={"X-Pool": pool})

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    backend = web.Application()
    backend.router.add_get("/", index)
    backend.router.add_get("/healthz", healthz)
    return backend


def bundled_config_path() -> str:
    return str(resources.files("splitter").joinpath("demo.yaml"))


def run(config_path: str | None) -> None:
    path = config_path or bundled_config_path()
    config = load(path)
    sockets = []
    try:
        for pool in config.pools:
            for backend in pool.backends:
                sockets.append((pool.name, bind(Address(backend.host, backend.port), "demo")))
    except StartupError:
        for _, sock in sockets:
            sock.close()
        raise

    async def start_backends(splitter: app.Splitter) -> None:
        for pool, sock in sockets:
            runner = web.AppRunner(demo_backend(pool), access_log=None, handle_signals=False)
            await runner.setup()
            await web.SockSite(runner, sock).start()
        _print_welcome(config, splitter)

    app.run(config, path, on_ready=start_backends)


def _print_welcome(config: Config, splitter: app.Splitter) -> None:
    proxy, admin = splitter.proxy_url, splitter.admin_url
    weights = ", ".join(f"{p.name} {p.weight:g}" for p in config.pools)
    print(
        f"""
splitter demo: proxy {proxy}  admin {admin}
  pools: {weights} (demo backends on loopback)
  try:   for i in $(seq 20); do curl -s {proxy}/; done | sort | uniq -c
         curl -s -H 'X-Splitter-Pool: green' {proxy}/
         splitter ctl --admin {admin} set canary=50 blue=50
         splitter ctl --admin {admin} events
  stop:  Ctrl-C
""",
        file=sys.stderr,
        flush=True,
    )
