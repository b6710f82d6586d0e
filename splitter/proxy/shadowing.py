"""Shadow copies: a share of real requests sent again to a candidate pool, their answers
compared with the primary's (splitter.shadow.compare), never sent to a client.

Theory of operation
-------------------
The exchange asks its listener for a tap when the weights chose a pool that carries the
route's shadow (`Shadowing.begin`: the method is one the shadow copies, the share's draw
says yes, the client's address has caused fewer than the route's
`rollouts.analysis.max_per_address` copies this second (its process's share of it, with
workers), the route has fewer than `max_in_flight` copies out (its process's share of
them, with workers); else nothing, or a `skipped` count). The tap, a `Copy`, is told
what the exchange does and does nothing to it:

    exchange                         Copy                         legs (one per pool)
    -------------------------------  ---------------------------  ----------------------
    start (after the primary's      keeps the framed body         -
    connection was asked for; the
    body read before it: held)
    _forward(framed)                 keeps it, up to max_body      -
    request complete                 sends: one Leg to the shadow  connect or take an idle
                                     pool, one to the reference    connection of the
                                                                   copies' own pools, write
                                                                   the head and body
    the backend's head and body      keeps status, header lines,   read the answer, keep
    (as passed to the client)        body up to max_body           up to max_body
    finished (listener)              primary known                 ...
                                     every side known -> compare -> tally, in flight - 1

Rules (docs/shadow.md):

- Nothing here can delay or change the client's answer: the copy holds references to
  bytes the exchange already has, the legs write to their own sockets (never waiting on
  them), and the exchange never waits for a copy. A copy outlives its exchange when its
  pool is slower; it keeps no reference to the exchange or the client connection.
- A copy carries the client's method, target, header lines and body, as the primary's
  request is sent (`policy.upstream_head`: the same X-Forwarded-* and X-Request-Id), with
  `X-Splitter-Shadow: 1` added. Requests that upgrade the connection are never copied.
- No client steers the comparison: copies are a random share of the requests, and one
  client address causes at most `max_per_address` of them per second (a client that
  floods cannot drown the others' differences, nor make its own the only ones).
- Limits: a request body over `max_body` is not sent (the copy is `skipped`); an answer's
  body over `max_body` is not kept (the comparison is `skipped`, and the leg's connection
  is closed rather than read to its end); at most `max_in_flight` copies of a route are out
  at once. Every leg has the route's connect and read timeouts, checked by the listener's
  sweep (`sweep`); a leg past its deadline is an error.
- The shadow pool is not the primary's: the legs have their own keep-alive pools
  (`pools`, by backend URL), and nothing a leg meets reaches the primary's retries,
  passive health, metrics or statistics. A leg on a kept-alive connection the backend had
  closed is sent once more on a fresh one (as the primary's would be), so that a stale
  connection is not counted against the candidate.
- The comparison runs in a callback of its own (`call_soon`), after whatever completed
  the copy: the primary's end is told before its last bytes are written to its client,
  and a comparison (up to milliseconds for a large JSON body) must not stand in between.
- Outcome of a copy, in its route's `Tally` (key "route/pool"): a leg that got no answer
  is an `error`; a primary that failed (splitter answered 502/504, or cut the answer) or
  an answer over `max_body` leaves nothing to compare (`skipped`); else the comparison's
  result. The bad-rate pair (`Tally.add_pair`) counts when both outcomes are known: a 5xx
  or no answer is bad; a client that left says nothing of the primary, and counts
  neither.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any, Final

from splitter.config import Limits
from splitter.errors import ProxyError, UpstreamConnectError, UpstreamLost, UpstreamTimeout
from splitter.http1.request import RequestHead
from splitter.http1.response import ResponseHead
from splitter.observe.stats import per_process
from splitter.proxy.policy import upstream_head
from splitter.proxy.upstream import BackendConnections, UpstreamConn, open_connection
from splitter.shadow import Response, Rules, Tally, compare
from splitter.state import BackendState, Live, PoolState, ShadowPlan

__all__ = ["SHADOW_HEADER", "Copy", "Leg", "Shadowing"]

log = logging.getLogger("splitter.shadow")

SHADOW_HEADER: Final = b"X-Splitter-Shadow: 1\r\n"
INF: Final = float("inf")

_random = random.Random().random  # its own generator: the share's draws


def header_list(fields: bytes) -> list[tuple[bytes, bytes]]:
    """Header lines ("Name: value\\r\\n" each) as (name, value) pairs, in order."""
    headers = []
    for line in fields.split(b"\r\n"):
        if line:
            name, _, value = line.partition(b":")
            headers.append((name, value.strip()))
    return headers


class Shadowing:
    """The shadow copies of one listener (one process): the tallies, the copies out, the
    legs' deadlines and their keep-alive pools."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        limits: Limits,
        connector: Callable[[Any, BackendConnections], None] | None = None,
    ) -> None:
        self.loop = loop
        self.connector = connector  # how connections are opened: the loop's, or a test's
        self.limits = limits
        self.connect_timeout = 2.0
        self.read_timeout = 60.0
        self.clock = 0.0  # the listener's clock: deadlines are set from it
        self.tallies: dict[str, Tally] = {}  # "route/pool" -> its tally (cumulative)
        self.in_flight: dict[str, int] = {}  # route -> copies out
        self.legs: set[Leg] = set()  # legs waiting for an answer (the sweep's)
        self.pools: dict[str, BackendConnections] = {}  # backend URL -> the legs' own pool
        self._rules: dict[Any, Rules] = {}  # shadow section -> its compiled rules
        self.processes = 1  # the workers sharing the per-address bound
        self.second = -1  # the second `per_address` counts
        self.per_address: dict[tuple[str, str], int] = {}  # (route, client) -> copies

    # -- the listener's side --------------------------------------------------------------

    def swap(self, live: Live) -> None:
        config = live.config
        self.limits = config.limits
        self.connect_timeout = config.timeouts.connect
        self.read_timeout = config.timeouts.read
        self.processes = config.workers
        urls: set[str] = set()
        shadows = set()
        for route in live.routes:
            if route.shadow is not None:
                shadows.add(route.shadow)
                for name in (route.shadow.pool, route.shadow.reference):
                    pool = route.pools.get(name) if name is not None else None
                    if pool is not None:
                        urls.update(b.url for b in pool.backends)
        for url in [u for u in self.pools if u not in urls]:
            self.pools.pop(url).close_all()  # legs out keep their own connection
        self._rules = {s: r for s, r in self._rules.items() if s in shadows}

    def rules(self, plan: ShadowPlan) -> Rules:
        rules = self._rules.get(plan.config)
        if rules is None:
            rules = self._rules[plan.config] = Rules.of(plan.config)
        return rules

    def tally(self, key: str) -> Tally:
        tally = self.tallies.get(key)
        if tally is None:
            tally = self.tallies[key] = Tally()
        return tally

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every tally as plain data (a worker ships it with its counters)."""
        return {key: tally.snapshot() for key, tally in self.tallies.items()}

    def begin(self, plan: ShadowPlan, req: RequestHead, source: bytes, client: str) -> Copy | None:
        """A copy of this request, when it is to be made (see the module's docstring)."""
        if req.method not in plan.methods or req.upgrade:
            return None
        if plan.share < 1.0 and _random() >= plan.share:
            return None
        route = plan.route
        second = int(self.clock)
        if second != self.second:
            self.second = second
            self.per_address.clear()
        who = (route, client)
        made = self.per_address.get(who, 0)
        if made >= per_process(plan.max_per_address, self.processes):
            self.tally(plan.key).add_skipped()
            return None
        out = self.in_flight.get(route, 0)
        if out >= per_process(plan.config.max_in_flight, self.processes):
            self.tally(plan.key).add_skipped()
            return None
        self.per_address[who] = made + 1
        self.in_flight[route] = out + 1
        return Copy(self, plan, req, source)

    def sweep(self, now: float) -> None:
        """Fail the legs past their deadline."""
        late = [leg for leg in self.legs if leg.deadline <= now]
        for leg in late:
            error: ProxyError
            if leg.upstream is None:
                error = UpstreamConnectError("connect timed out")
            else:
                error = UpstreamTimeout("read timed out")
            leg.failed(error)

    def close(self) -> None:
        for leg in list(self.legs):
            leg.failed(UpstreamLost("shutting down"))
        for pool in self.pools.values():
            pool.close_all()
        self.pools.clear()

    # -- the copies' side -----------------------------------------------------------------

    def connections(self, backend: BackendState) -> BackendConnections:
        pool = self.pools.get(backend.url)
        if pool is None:
            pool = self.pools[backend.url] = BackendConnections(backend.backend, self.limits)
        return pool

    def copy_done(self, copy: Copy) -> None:
        route = copy.plan.route
        out = self.in_flight.get(route, 0) - 1
        if out > 0:
            self.in_flight[route] = out
        else:
            self.in_flight.pop(route, None)


class Copy:
    """One request's copy (or two, with a reference): the exchange's tap."""

    def __init__(self, owner: Shadowing, plan: ShadowPlan, req: RequestHead, source: bytes) -> None:
        self.owner = owner
        self.plan = plan
        self.req = req
        self.source = source
        self.max_body = plan.config.max_body
        self.body: list[bytes] | None = []  # the framed request body; None: over max_body
        self.body_size = 0
        self.sent = False
        self.over = False  # the request body is over max_body: not sent, skipped
        # The primary's answer as the backend gave it.
        self.primary_status = 0
        self.primary_fields = b""
        self.primary_parts: list[bytes] | None = []  # None: over max_body
        self.primary_size = 0
        self.primary_known = False
        self.primary_ok = False
        self.primary_failed = False
        self.legs: list[Leg] = []
        self.open_legs = 0
        self.ended = False
        self.at = time.time()

    def start(self, pending: list[bytes] | None, pending_size: int, complete: bool) -> None:
        """The body read before the exchange's turn came, and whether it is complete."""
        if pending:
            self.request_body(pending, pending_size)
        if complete:
            self.request_end()

    # -- ShadowTap: from the exchange -----------------------------------------------------

    def request_body(self, framed: list[bytes], size: int) -> None:
        body = self.body
        if body is None or self.sent:
            return
        self.body_size += size
        if self.body_size > self.max_body:
            self.body = None
            self.over = True
            return
        body.extend(framed)

    def request_end(self) -> None:
        if self.sent or self.ended:
            return
        self.sent = True
        if self.over:
            return  # decided once the primary is known (skipped)
        plan = self.plan
        pools: list[PoolState] = [plan.pool]
        if plan.reference is not None:
            pools.append(plan.reference)
        body = self.body or []
        self.body = None
        for pool in pools:
            leg = Leg(self, pool, body)
            self.legs.append(leg)
            self.open_legs += 1
        for leg in self.legs:
            leg.start()

    def primary_head(self, status: int, fields: bytes) -> None:
        self.primary_status = status
        self.primary_fields = fields

    def primary_body(self, data: bytes) -> None:
        parts = self.primary_parts
        if parts is None:
            return
        self.primary_size += len(data)
        if self.primary_size > self.max_body:
            self.primary_parts = None
        else:
            parts.append(data)

    def primary_finished(self, ok: bool, status: int, failed: bool) -> None:
        """The exchange is over: `ok` its answer is complete; else `failed` when a backend
        failed it (splitter answered a 502 or 504, or cut the answer), not when the client
        left or its request was refused."""
        self.primary_known = True
        self.primary_ok = ok
        self.primary_failed = failed
        self.primary_status = status
        if not self.sent or self.over:
            self.sent = True  # the request never completed (or was too big): no copy
            self._end_skipped()
            return
        if self.open_legs == 0:
            self._complete_soon()

    # -- from the legs --------------------------------------------------------------------

    def leg_done(self) -> None:
        self.open_legs -= 1
        if self.open_legs == 0 and self.primary_known:
            self._complete_soon()

    # -- the outcome ----------------------------------------------------------------------

    def _end_skipped(self) -> None:
        if self.ended:
            return
        self.ended = True
        self.owner.tally(self.plan.key).add_skipped()
        self.owner.copy_done(self)

    def _complete_soon(self) -> None:
        """Compare after the callback that completed the copy: never between a client's
        last bytes and their write (the primary's end is told before its answer is
        flushed). Comparisons queued in one turn run back to back in the next."""
        self.owner.loop.call_soon(self._complete)

    def _complete(self) -> None:
        if self.ended:
            return
        self.ended = True
        owner = self.owner
        tally = owner.tally(self.plan.key)
        try:
            self._record(tally, owner)
        except Exception:  # a comparison must never take the listener down
            log.exception("shadow: a comparison failed")
            tally.add_error()
        finally:
            owner.copy_done(self)

    def _record(self, tally: Tally, owner: Shadowing) -> None:
        shadow = self.legs[0]
        reference = self.legs[1] if len(self.legs) > 1 else None
        status = self.primary_status
        if self.primary_ok or self.primary_failed:  # a client that left says nothing
            primary_bad = self.primary_failed or status >= 500
            shadow_bad = shadow.error is not None or shadow.status >= 500
            tally.add_pair(shadow_bad, primary_bad)
        if shadow.error is not None or (reference is not None and reference.error is not None):
            tally.add_error()
            return
        if not self.primary_ok:
            tally.add_skipped()
            return
        parts = self.primary_parts
        primary = Response(
            status,
            header_list(self.primary_fields),
            None if parts is None else b"".join(parts),
        )
        ref = None if reference is None else reference.response()
        comparison = compare(primary, shadow.response(), owner.rules(self.plan), ref)
        tally.add(comparison, at=self.at, method=self.req.method, target=self.req.target)


class Leg:
    """One copy sent to one pool: the owner of one backend connection while it waits for
    the answer (`upstream.UpstreamOwner`, `response.ResponseSink`, `upstream.Connecting`)."""

    def __init__(self, copy: Copy, pool: PoolState, body: list[bytes]) -> None:
        self.copy = copy
        self.pool = pool
        self.body = body
        self.upstream: UpstreamConn | None = None
        self.deadline = INF
        self.status = 0
        self.fields = b""
        self.parts: list[bytes] | None = []  # None: over max_body
        self.size = 0
        self.error: ProxyError | None = None
        self.done = False
        self.reused = False
        self.retried = False
        self.got_head = False
        self.task: asyncio.Task[None] | None = None
        self.head = b""

    def start(self, fresh: bool = False) -> None:
        backend = self.pool.pick()
        if backend is None:
            self.failed(UpstreamConnectError(f"pool {self.pool.name} has no live backend"))
            return
        copy = self.copy
        owner = copy.owner
        head = upstream_head(copy.req, copy.source, backend)
        self.head = head[:-2] + SHADOW_HEADER + b"\r\n"
        owner.legs.add(self)
        conns = owner.connections(backend)
        upstream = None if fresh else conns.take_idle()
        if upstream is not None:
            self.reused = True
            self._attach(upstream)
            return
        self.reused = False
        self.deadline = owner.clock + owner.connect_timeout
        if owner.connector is not None:
            owner.connector(self, conns)
        else:
            self.task = owner.loop.create_task(self._connect(conns))

    async def _connect(self, conns: BackendConnections) -> None:
        try:
            await open_connection(self.copy.owner.loop, conns, self)
        except UpstreamConnectError as error:
            self.task = None
            self.failed(error)

    def connect_failed(self, error: ProxyError) -> None:
        self.task = None
        self.failed(error)

    def connected(self, upstream: UpstreamConn) -> bool:
        if self.done or self.upstream is not None:
            return False
        self.task = None
        self._attach(upstream)
        return True

    def _attach(self, upstream: UpstreamConn) -> None:
        self.upstream = upstream
        upstream.owner = self
        upstream.reader.start(self.copy.req.method == b"HEAD", False)
        upstream.write_parts([self.head, *self.body])
        owner = self.copy.owner
        self.deadline = owner.clock + owner.read_timeout

    def response(self) -> Response:
        parts = self.parts
        return Response(
            self.status, header_list(self.fields), None if parts is None else b"".join(parts)
        )

    # -- UpstreamOwner --------------------------------------------------------------------

    def upstream_data(self, data: bytes) -> None:
        upstream = self.upstream
        if upstream is None:
            return
        try:
            upstream.reader.feed(data, self)
        except ProxyError as error:
            self.failed(error)
            return
        if self.parts is None and not self.done:  # over max_body: no need to read it all
            self._finish(reusable=False)

    def upstream_eof(self) -> None:
        upstream = self.upstream
        if upstream is None:
            return
        try:
            upstream.reader.eof(self)
        except ProxyError as error:
            self.failed(error)
        if self.upstream is upstream and not self.done:  # (a retry has a connection of its own)
            self.failed(UpstreamLost("connection closed before the answer was complete"))
        upstream.close()

    def upstream_lost(self, error: ProxyError | None) -> None:
        if self.upstream is None:
            return
        if error is None:
            self.upstream_eof()
        else:
            self.failed(error)

    def upstream_paused(self) -> None:
        pass  # the whole copy is written at once: nothing to hold back

    def upstream_resumed(self) -> None:
        pass

    # -- ResponseSink ---------------------------------------------------------------------

    def on_response_head(self, head: ResponseHead) -> None:
        self.got_head = True
        self.status = head.status
        self.fields = head.fields
        if head.status == 101:  # never asked for; nothing to compare after it
            self.parts = []
            self._finish(reusable=False)

    def on_response_body(self, data: bytes) -> None:
        parts = self.parts
        if parts is None or self.done:
            return
        self.size += len(data)
        if self.size > self.copy.max_body:
            self.parts = None
        else:
            parts.append(data)

    def on_response_end(self, clean: bool) -> None:
        if self.done:
            return
        upstream = self.upstream
        self._finish(reusable=clean and upstream is not None and upstream.reader.keep_alive)

    # -- ending ---------------------------------------------------------------------------

    def _finish(self, reusable: bool) -> None:
        self.done = True
        self.deadline = INF
        owner = self.copy.owner
        owner.legs.discard(self)
        upstream = self.upstream
        self.upstream = None
        if upstream is not None:
            if reusable:
                upstream.done(True, owner.clock)
            else:
                upstream.abort()
        self.body = []
        self.copy.leg_done()

    def failed(self, error: ProxyError) -> None:
        if self.done:
            return
        upstream = self.upstream
        self.upstream = None
        if upstream is not None:
            upstream.abort()
        task = self.task
        if task is not None:
            self.task = None
            task.cancel()
        if (
            isinstance(error, UpstreamLost)
            and self.reused
            and not self.got_head
            and not self.retried
        ):  # a kept-alive connection the backend had closed: once more, on a fresh one
            self.retried = True
            self.copy.owner.legs.discard(self)
            self.start(fresh=True)
            return
        self.error = error
        self.done = True
        self.deadline = INF
        self.copy.owner.legs.discard(self)
        self.body = []
        self.copy.leg_done()
