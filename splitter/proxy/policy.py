"""The proxy's decisions, as named phases the exchange calls (pingora's `ProxyHttp`):

    route            which pool serves the request, and the sticky cookie
    (docs/configuration.md#choosing-a-pool)
    upstream_head    the request head sent to the backend (docs/configuration.md#proxying:
    hop-by-hop headers
                     gone, X-Forwarded-*, X-Request-Id, Host, the body's framing)
    response_status  passive health feedback: a 502, 503 or 504 counts against the backend
    response_head    the response head sent to the client, and its framing
    upstream_failed  a failure talking to a backend: the metrics, the log, passive health

Plain functions of their arguments (the `Policy` object holds what outlives a request: the
ejector, the counters, the log's rate limit); no I/O but that log.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Final

from splitter.config import Backend
from splitter.errors import ProxyError
from splitter.http1.messages import CRLF
from splitter.http1.request import RequestHead
from splitter.http1.response import ResponseHead
from splitter.observe.counters import Counters
from splitter.observe.observation import Observation
from splitter.proxy.ejection import Ejector
from splitter.routing import cookie_from_header
from splitter.state import BackendState, Live, PoolState

__all__ = ["F_CHUNKED", "F_CLOSE", "F_LENGTH", "F_NONE", "Policy", "route"]

log = logging.getLogger("splitter.proxy")

# How a response body is framed towards the client.
F_NONE: Final = 0  # no body (HEAD, 204, 304)
F_LENGTH: Final = 1  # the backend's Content-Length
F_CHUNKED: Final = 2  # re-chunked for an HTTP/1.1 client
F_CLOSE: Final = 3  # delimited by the close, for an HTTP/1.0 client

_random = random.Random().random  # its own generator: pool draws when stickiness is off
_LOG_EVERY: Final = 1.0  # seconds between two log lines of the same kind
# A backend's answers that say it cannot serve (it is a gateway whose own upstream failed,
# overloaded, or timing out): passive ejection counts these. Any other 5xx is the
# application's own error, the rollout judge's to weigh (docs/rollouts.md): never counted, so
# that no client can eject a backend by asking for a page that fails.
GATEWAY_STATUSES: Final = frozenset({502, 503, 504})


def route(live: Live, req: RequestHead, obs: Observation) -> tuple[PoolState | None, bytes | None]:
    """The pool for this request and the Set-Cookie line for a new client; records in
    `obs` the route and how the pool was chosen. Within the route: the override header,
    then the segments, then the sticky client and the weights. No pool: `obs.route_name`
    is None when no route takes the request (404), else no pool of it is live (503)."""
    rs = live.only
    if rs is None:
        index = live.table.match(req.host, req.target)
        if index < 0:
            return None, None
        rs = live.routes[index]
    obs.route_name = rs.name
    obs.pool_key = rs.no_pool_key  # until a pool is chosen
    if req.override is not None and live.override_header is not None:
        pool = rs.pools.get(req.override.decode("latin-1"))
        if pool is not None:
            obs.by_override = True
            return pool, None
    segments = rs.segments
    if segments is not None:
        name = segments.match(req.segment_values, req.cookie, req.target, obs.client_addr)
        if name is not None:
            # Chosen users: counted with their pool, judged like the override's requests
            # (never in a canary step; in a blue-green preview), no cookie set.
            obs.by_override = True
            obs.by_segment = True
            return rs.pools[name], None
    chooser = rs.chooser
    ids = live.client_ids
    set_cookie = None
    if ids is None:
        # Stickiness off: a fresh random id per request, which is a weighted draw.
        obs.assigned = True
        name = chooser.at_random(_random())
    else:
        client_id: str | None = None
        if req.cookie is not None:
            value = cookie_from_header(req.cookie.decode("latin-1"), live.cookie_name)
            if value is not None:
                client_id = ids.verify(value)
        if client_id is None:
            client_id = ids.new_id()
            obs.assigned = True
            set_cookie = (
                live.set_cookie_prefix
                + ids.cookie_value(client_id).encode()
                + live.set_cookie_attrs
                + (b"; Secure\r\n" if req.https else b"\r\n")
            )
        obs.client_id = client_id
        name = chooser.for_client(client_id)
    return (rs.pools[name] if name is not None else None), set_cookie


_XFP_HTTP: Final = b"\r\nX-Forwarded-Proto: http\r\nX-Request-Id: "
_XFP_HTTPS: Final = b"\r\nX-Forwarded-Proto: https\r\nX-Request-Id: "


def upstream_head(req: RequestHead, peer: bytes, backend: BackendState) -> bytes:
    """The request head for the backend."""
    parts = [req.method, b" ", req.target, b" HTTP/1.1\r\n", *req.lines]
    host = req.host
    if host is not None:
        parts += (b"Host: ", host, b"\r\nX-Forwarded-Host: ", host, CRLF)
    else:  # HTTP/1.0 without Host: the backend's own address
        parts += (b"Host: ", _authority(backend.backend), CRLF)
    parts += (b"X-Forwarded-For: ", peer if req.xff is None else req.xff + b", " + peer)
    request_id = req.request_id
    assert request_id is not None
    parts += (_XFP_HTTPS if req.tls else _XFP_HTTP, request_id, CRLF)
    if req.upgrade:
        parts += (b"Connection: upgrade\r\nUpgrade: ", req.upgrade_value, CRLF)
    elif req.chunked:
        parts.append(b"Transfer-Encoding: chunked\r\n")
    elif req.content_length >= 0:
        parts.append(b"Content-Length: %d\r\n" % req.content_length)
    parts.append(CRLF)
    return b"".join(parts)


def response_head(
    req: RequestHead,
    head: ResponseHead,
    set_cookie: bytes | None,
    body_complete: bool,
    draining: bool,
) -> tuple[bytes, int, bool]:
    """The head for the client, the framing of the body that follows, and whether the
    connection closes after this response."""
    status = head.status
    request_id = req.request_id
    assert request_id is not None
    if status == 101:
        data = b"".join((
            head.status_line, head.fields, b"X-Request-Id: ", request_id,
            b"\r\nConnection: upgrade\r\nUpgrade: ", head.upgrade, b"\r\n\r\n",
        ))  # fmt: skip
        return data, F_NONE, True
    out = [head.status_line, head.fields]
    if req.method == b"HEAD" or status == 204 or status == 304:
        framing = F_NONE  # a Content-Length passes on as it came, in `fields`
    elif head.content_length >= 0:
        framing = F_LENGTH
    elif req.version == "1.1":
        framing = F_CHUNKED
        out.append(b"Transfer-Encoding: chunked\r\n")
    else:
        framing = F_CLOSE
    if set_cookie is not None:
        out.append(set_cookie)
    close = (
        req.upgrade  # the reader stopped at the upgrade: nothing after it can be read
        or framing == F_CLOSE
        or not req.keep_alive
        or not body_complete  # answered early: the rest of the body is not read
        or draining
    )
    out.append(b"X-Request-Id: ")
    out.append(request_id)
    out.append(b"\r\nConnection: close\r\n\r\n" if close else b"\r\n\r\n")
    return b"".join(out), framing, close


class Policy:
    """The phases that keep state across requests: passive health, counters, the log."""

    def __init__(self, ejector: Ejector, counters: Counters | None) -> None:
        self.ejector = ejector
        self.counters = counters
        self._logged: dict[str, float] = {}

    def response_status(self, backend: BackendState | None, status: int, live: Live | None) -> None:
        if backend is None:
            return
        if status in GATEWAY_STATUSES:
            self.ejector.failed(backend, live)
        elif backend.health.failures:
            backend.health.failures = 0

    def upstream_failed(
        self,
        error: ProxyError,
        route_name: str | None,
        pool_name: str | None,
        backend: BackendState | None,
        says_little: bool,
        live: Live | None,
    ) -> None:
        """Count and log a failure talking to a backend; passive health feedback, unless
        it `says_little` about the backend (a kept-alive connection the backend had
        closed, or a reset in the middle of a body)."""
        if self.counters is not None:
            self.counters.count_upstream_error(pool_name, error.reason, route_name)
        if backend is not None and not says_little:
            self.ejector.failed(backend, live)
        url = backend.url if backend is not None else "-"
        self.log_limited(f"upstream {error.reason} {url}", "backend %s: %s (%s)",
                         url, error.reason, error)  # fmt: skip

    def log_limited(self, key: str, message: str, *args: object) -> None:
        """One log line per key per second at most: a flood must not flood the log."""
        now = time.monotonic()
        if now - self._logged.get(key, 0.0) >= _LOG_EVERY:
            self._logged[key] = now
            log.warning(message, *args)


def _authority(backend: Backend) -> bytes:
    host = backend.host
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{backend.port}".encode()
