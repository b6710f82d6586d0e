"""`splitter demo`: small backends and the proxy in front of them, in one process.

The bundled `demo.yaml` has four routes: `default` (blue, green, canary; a segment sends
requests with `X-Beta: 1` to the canary), `api` (/api: api-blue, api-canary), `prices`
(/prices: prices-blue; prices-canary at weight 0 gets shadow copies of its requests,
docs/shadow.md) and `greeter` (/demo.Greeter: a gRPC service on `h2c` pools,
`splitter.demogrpc`). The backends are aiohttp apps on loopback, one for each backend the
config names; each answers a GET of any path with its pool name, and `GET /healthz` with
ok; a `prices` pool answers JSON instead ({"item", "price", "currency", "served_at"}),
and its canary rounds prices up to the next half unit: the one field that differs.
Everything else is the real proxy, started exactly as `splitter run` would start it,
but for its state: a demo starts afresh, with its state file in a temporary directory
that is removed when it stops (a rollout left by an earlier run would block the
walk-through, and the weights it left would not be the ones printed).

To watch a rollout happen: `--load RPS` sends the proxy that many requests a second from
simulated clients (each keeping its sticky cookie), so the judge has something to judge;
`--faulty POOL` makes that pool's backend answer 500 to a share of its requests and
`--slow POOL` makes it 300 ms slower, so a rollout of it is rolled back. A backend's
faults can also be changed while it runs: `POST /fault` on the backend with
`{"fail_rate": 0.3, "delay": 0}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import math
import os
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from importlib import resources
from typing import Any

import aiohttp
from aiohttp import web

from splitter import app
from splitter.config import Address, Config, Route, Segment, load
from splitter.demogrpc import HELLO_PATH, GreeterProtocol
from splitter.errors import StartupError
from splitter.runtime import bind

FAULTY_RATE = 0.3  # --faulty: the share of requests answered 500
SLOW_DELAY = 0.3  # --slow: seconds added to each request
SUGGESTED_LOAD = 60  # requests/s: a demo rollout of the canary takes about a minute


def price_of(path: str, pool: str) -> dict[str, Any]:
    """A `prices` backend's answer: the same for every version but the canary's rounding."""
    item = path.rstrip("/").rsplit("/", 1)[-1]
    cents = sum(item.encode()) % 1000 + 100
    price = cents / 100
    if pool.endswith("canary"):
        price = math.ceil(price * 2) / 2
    return {"item": item, "price": price, "currency": "EUR", "served_at": time.time()}


def demo_backend(pool: str, fail_rate: float = 0.0, delay: float = 0.0) -> web.Application:
    faults = {"fail_rate": fail_rate, "delay": delay}

    async def index(request: web.Request) -> web.Response:
        if faults["delay"]:
            await asyncio.sleep(faults["delay"])
        if faults["fail_rate"] and random.random() < faults["fail_rate"]:
            return web.Response(status=500, text=f"{pool} failed on purpose\n",
                                headers={"X-Pool": pool})  # fmt: skip
        if pool.startswith("prices"):
            return web.json_response(price_of(request.path, pool), headers={"X-Pool": pool})
        return web.Response(text=f"{pool}\n", headers={"X-Pool": pool})

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def fault(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            rate = float(body.get("fail_rate", 0.0))
            wait = float(body.get("delay", 0.0))
        except (ValueError, TypeError, AttributeError):
            return web.json_response({"error": 'expected {"fail_rate": 0..1, "delay": s}'},
                                     status=400)  # fmt: skip
        if not (0 <= rate <= 1 and 0 <= wait <= 10):
            return web.json_response({"error": "fail_rate 0..1, delay 0..10 s"}, status=400)
        faults.update(fail_rate=rate, delay=wait)
        return web.json_response(faults)

    backend = web.Application()
    backend.router.add_get("/healthz", healthz)
    backend.router.add_post("/fault", fault)
    backend.router.add_get("/{path:.*}", index)  # "/", and "/api/..." for the route api
    return backend


async def simulated_clients(
    proxy_url: str, rate: float, clients: int = 200, paths: Sequence[str] = ("/",)
) -> None:
    """`rate` requests a second from `clients` clients, each keeping its sticky cookie,
    in turn to each of `paths` ("/prices/" takes an item after it)."""
    cookies: dict[int, str] = {}
    interval = 1.0 / rate
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout, trust_env=False,
                                     cookie_jar=aiohttp.DummyCookieJar()) as session:  # fmt: skip
        n = 0
        while True:
            client = n % clients
            n += 1
            headers = {"Cookie": cookies[client]} if client in cookies else {}
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                path = paths[n % len(paths)]
                if path.endswith("/") and path != "/":
                    path += f"item-{n % 50}"
                async with session.get(proxy_url + path, headers=headers) as response:
                    await response.read()
                    set_cookie = response.headers.get("Set-Cookie")
                    if set_cookie:
                        cookies[client] = set_cookie.split(";", 1)[0]
            await asyncio.sleep(interval)


def bundled_config_path() -> str:
    return str(resources.files("splitter").joinpath("demo.yaml"))


def run(
    config_path: str | None,
    load_rate: float = 0.0,
    faulty: Sequence[str] = (),
    slow: Sequence[str] = (),
) -> None:
    path = config_path or bundled_config_path()
    config = load(path)
    pools = [pool for route in config.routes for pool in route.pools]
    names = {p.name for p in pools}
    for name in [*faulty, *slow]:
        if name not in names:
            known = ", ".join(sorted(names))
            raise StartupError(f"demo: no pool {name!r} (the pools are {known})")
    if load_rate > 0:  # the access log of the simulated clients would fill the terminal
        config = dataclasses.replace(config, access_log=False)
    sockets = []
    try:
        for pool in pools:
            for backend in pool.backends:
                sockets.append((pool.name, bind(Address(backend.host, backend.port), "demo")))
    except StartupError:
        for _, sock in sockets:
            sock.close()
        raise

    tasks: list[asyncio.Task[Any]] = []
    grpc_pools = {p.name for p in pools if p.protocol == "h2c"}

    async def start_backends(splitter: app.Splitter) -> None:
        loop = asyncio.get_running_loop()
        for pool, sock in sockets:
            if pool in grpc_pools:  # a gRPC service (splitter.demogrpc)
                faults = {"fail_rate": FAULTY_RATE if pool in faulty else 0.0}
                await loop.create_server(
                    functools.partial(GreeterProtocol, pool, faults), sock=sock
                )
                continue
            backend = demo_backend(
                pool,
                fail_rate=FAULTY_RATE if pool in faulty else 0.0,
                delay=SLOW_DELAY if pool in slow else 0.0,
            )
            runner = web.AppRunner(backend, access_log=None, handle_signals=False)
            await runner.setup()
            await web.SockSite(runner, sock).start()
        if load_rate > 0:
            paths = ["/"] * 3 + [f"{r.path_prefix}/" for r in config.routes if r.shadow]
            tasks.append(asyncio.get_running_loop().create_task(
                simulated_clients(splitter.proxy_url, load_rate, paths=paths)
            ))  # fmt: skip
        _print_welcome(config, splitter, config_path, load_rate, faulty, slow)

    with tempfile.TemporaryDirectory(prefix="splitter-demo-") as state_dir:
        config = dataclasses.replace(config, state_file=os.path.join(state_dir, "state.json"))
        app.run(config, path, on_ready=start_backends)


def _print_welcome(
    config: Config,
    splitter: app.Splitter,
    config_path: str | None,
    load_rate: float,
    faulty: Sequence[str],
    slow: Sequence[str],
) -> None:
    """The URLs and lines to try. A rollout is judged on traffic: without `--load` nothing
    sends any, and a rollout started then would wait for ever, so its lines come with the
    command that makes the traffic."""
    proxy, admin = splitter.proxy_url, splitter.admin_url
    ctl = f"splitter ctl --admin {admin}"
    routes = "\n           ".join(_route_text(route) for route in config.routes)
    tries = []
    main = config.main_route
    segment = next((s for s in main.segments if s.kind == "header"), None) if main else None
    if segment is not None:
        value = segment.value if segment.value is not None else "1"
        tries.append(
            f"curl -s -H '{segment.name}: {value}' {proxy}/    # a segment: {segment.pool}"
        )
    other = next((r for r in config.routes if r is not main and not r.hosts and not r.shadow), None)
    if other is not None and other.path_prefix != "/":
        tries.append(f"for i in $(seq 20); do curl -s {proxy}{other.path_prefix}/; done "
                     f"| sort | uniq -c    # the route {other.name}")  # fmt: skip
        tries.append(f"{ctl} --route {other.name} weights")
    greeter = next((r for r in config.routes if any(p.protocol == "h2c" for p in r.pools)), None)
    if greeter is not None:
        tries.append(
            f"printf '\\0\\0\\0\\0\\3you' | curl -s --http2-prior-knowledge --data-binary @- "
            f"-H 'content-type: application/grpc' -H 'te: trailers' "
            f"{proxy}{HELLO_PATH.decode()} | tail -c +6; echo    # gRPC: the route {greeter.name}"
        )
    if len(config.routes) > 1:
        tries.append(f"{ctl} routes")
    shadowed = next((r for r in config.routes if r.shadow is not None and not r.hosts), None)
    if shadowed is not None and shadowed.shadow is not None:
        pool = shadowed.shadow.pool
        tries.append(f"curl -s {proxy}{shadowed.path_prefix}/item-7    # copied to {pool}")
        tries.append(f"{ctl} --route {shadowed.name} shadow")
    more = "".join(f"           {line}\n" for line in tries)
    notes = []
    if load_rate:
        notes.append(f"  load:    {load_rate:g} requests/s from 200 simulated clients")
    for pool in faulty:
        notes.append(f"  fault:   {pool} answers 500 to {FAULTY_RATE:.0%} of its requests")
    for pool in slow:
        notes.append(f"  fault:   {pool} is {SLOW_DELAY * 1000:g} ms slower")
    extra = "\n".join(notes) + "\n" if notes else ""
    if load_rate:
        rollout = f"""  rollout: {ctl} rollout start canary --steps 20,50,100
           {ctl} rollout status --watch
"""
    else:
        again = ["splitter demo"]
        if config_path:
            again.append(f"--config {config_path}")
        again.append(f"--load {SUGGESTED_LOAD}")
        again += [f"--faulty {pool}" for pool in faulty] + [f"--slow {pool}" for pool in slow]
        rollout = (
            "  rollout: needs traffic to judge, and this demo sends none: stop it (Ctrl-C), run\n"
            f"           {' '.join(again)}\n"
            f"           ({SUGGESTED_LOAD} requests/s from simulated clients), then\n"
            f"           {ctl} rollout start canary --steps 20,50,100\n"
            f"           {ctl} rollout status --watch\n"
        )
    print(
        f"""
splitter demo: proxy {proxy}  admin {admin}
  dashboard: {admin}/
  routes:  {routes}
{extra}  try:     for i in $(seq 20); do curl -s {proxy}/; done | sort | uniq -c
           curl -s -H 'X-Splitter-Pool: green' {proxy}/
{more}           {ctl} set canary=50 blue=50
           {ctl} events
{rollout}  stop:    Ctrl-C
""",
        file=sys.stderr,
        flush=True,
    )


def _route_text(route: Route) -> str:
    """A route as the welcome lists it: "api /api: api-blue 90, api-canary 10"."""
    where = ",".join(route.hosts) + route.path_prefix if route.hosts else route.path_prefix
    weights = ", ".join(f"{p.name} {p.weight:g}" for p in route.pools)
    shadow = route.shadow
    copies = f"; shadow -> {shadow.pool} {shadow.share:.0%}" if shadow is not None else ""
    return f"{route.name} {where}: {weights}{copies}" + "".join(
        f"; {_segment_text(s)}" for s in route.segments
    )


def _segment_text(segment: Segment) -> str:
    """A segment as the welcome lists it: "X-Beta: 1 -> canary"."""
    if segment.kind == "source":
        what = "from " + ", ".join(segment.source)
    elif segment.kind == "header":
        what = segment.name + (f": {segment.value}" if segment.value is not None else "")
    elif segment.kind == "cookie":
        what = "cookie " + segment.name + (f"={segment.value}" if segment.value is not None else "")
    else:
        what = "?" + segment.name + (f"={segment.value}" if segment.value is not None else "")
    return f"{what} -> {segment.pool}"
