"""The proxy's decisions, as named phases that the exchange calls (pingora's `ProxyHttp`):

    route            which pool serves the request, and the sticky cookie (contract 3)
    upstream_head    the request head sent to the backend (contract 4: hop-by-hop headers
                     gone, X-Forwarded-*, X-Request-Id, Host, the body's framing)
    response_status  passive health feedback: a 5xx counts against the backend
    response_head    the response head sent to the client and its framing
    upstream_failed  a failure talking to a backend: the metrics, the log, passive health

Plain functions of the exchange and the live snapshot; no I/O but the rate-limited log.
"""

from __future__ import annotations

import logging
import random
import time
from typing import TYPE_CHECKING, Final

from splitter.counters import Counters
from splitter.errors import ProxyError, UpstreamLost
from splitter.http1.messages import CRLF, status_line
from splitter.http1.response import ResponseHead
from splitter.proxy.ejection import Ejector
from splitter.proxy.exchange import F_CHUNKED, F_CLOSE, F_LENGTH, F_NONE, Exchange
from splitter.routing import cookie_from_header
from splitter.state import Live, PoolState

if TYPE_CHECKING:
    from splitter.config import Backend

__all__ = ["Policy"]

log = logging.getLogger("splitter.proxy")

_random = random.Random().random  # its own generator: pool draws when stickiness is off
_LOG_EVERY: Final = 1.0  # seconds between two log lines of the same kind


class Policy:
    def __init__(self, ejector: Ejector, counters: Counters | None) -> None:
        self.ejector = ejector
        self.counters = counters
        self._logged: dict[str, float] = {}

    # -- route --------------------------------------------------------------------------

    def route(self, ex: Exchange, live: Live) -> PoolState | None:
        """The pool for this request (override header, else sticky client and weights)."""
        req = ex.req
        if req.override is not None and live.override_header is not None:
            pool = live.pools.get(req.override.decode("latin-1"))
            if pool is not None:
                ex.by_override = True
                return pool
        chooser = live.chooser
        assert chooser is not None
        ids = live.client_ids
        if ids is None:
            # Stickiness off: a fresh random id per request, which is a weighted draw.
            ex.assigned = True
            name = chooser.at_random(_random())
        else:
            client_id: str | None = None
            if req.cookie is not None:
                value = cookie_from_header(req.cookie.decode("latin-1"), live.cookie_name)
                if value is not None:
                    client_id = ids.verify(value)
            if client_id is None:
                client_id = ids.new_id()
                ex.assigned = True
                ex.set_cookie = (
                    live.set_cookie_prefix
                    + ids.cookie_value(client_id).encode()
                    + live.set_cookie_attrs
                    + (b"; Secure\r\n" if req.https else b"\r\n")
                )
            ex.client_id = client_id
            name = chooser.for_client(client_id)
        return live.pools[name] if name is not None else None

    # -- the request head towards the backend -------------------------------------------

    def upstream_head(self, ex: Exchange) -> bytes:
        req = ex.req
        parts = [req.method, b" ", req.target, b" HTTP/1.1\r\n", *req.lines]
        host = req.host
        if host is not None:
            parts.append(b"Host: " + host + CRLF)
            parts.append(b"X-Forwarded-Host: " + host + CRLF)
        elif ex.backend is not None:  # HTTP/1.0 without Host: the backend's own address
            parts.append(b"Host: " + _authority(ex.backend.backend) + CRLF)
        peer = ex.conn.peer
        xff = peer if req.xff is None else req.xff + b", " + peer
        parts.append(b"X-Forwarded-For: " + xff + CRLF)
        parts.append(b"X-Forwarded-Proto: http\r\n")
        parts.append(b"X-Request-Id: " + req.request_id + CRLF)  # type: ignore[operator]
        if req.upgrade:
            parts.append(b"Connection: upgrade\r\nUpgrade: " + req.upgrade_value + CRLF)
        elif req.chunked:
            parts.append(b"Transfer-Encoding: chunked\r\n")
        elif req.content_length >= 0:
            parts.append(b"Content-Length: %d\r\n" % req.content_length)
        parts.append(CRLF)
        return b"".join(parts)

    # -- the response -------------------------------------------------------------------

    def response_status(self, ex: Exchange, status: int) -> None:
        backend = ex.backend
        if backend is None:
            return
        if status >= 500:
            self.ejector.failed(backend, ex.live)
        elif backend.health.failures:
            backend.health.failures = 0

    def response_head(self, ex: Exchange, head: ResponseHead) -> bytes:
        """The head for the client; sets the exchange's framing and whether to close."""
        req = ex.req
        status = head.status
        out = [status_line(status, head.reason), *head.lines]
        if status == 101:
            out.append(b"X-Request-Id: " + req.request_id + CRLF)  # type: ignore[operator]
            out.append(b"Connection: upgrade\r\nUpgrade: " + head.upgrade + b"\r\n\r\n")
            return b"".join(out)
        content_length = head.content_length
        if req.method == b"HEAD" or status == 204 or status == 304:
            framing = F_NONE
            if content_length >= 0:
                out.append(b"Content-Length: %d\r\n" % content_length)
        elif content_length >= 0:
            framing = F_LENGTH
            out.append(b"Content-Length: %d\r\n" % content_length)
        elif req.version == "1.1":
            framing = F_CHUNKED
            out.append(b"Transfer-Encoding: chunked\r\n")
        else:
            framing = F_CLOSE
        ex.framing = framing
        if ex.set_cookie is not None:
            out.append(ex.set_cookie)
        out.append(b"X-Request-Id: " + req.request_id + CRLF)  # type: ignore[operator]
        close = (
            req.upgrade  # the reader stopped at the upgrade: nothing after it can be read
            or framing == F_CLOSE
            or not req.keep_alive
            or not ex.body_complete  # answered early: the rest of the body is not read
            or ex.ctx.draining
        )
        ex.close_after = close
        out.append(b"Connection: close\r\n\r\n" if close else CRLF)
        return b"".join(out)

    # -- failures -----------------------------------------------------------------------

    def upstream_failed(self, ex: Exchange, error: ProxyError) -> None:
        """Count and log a failure talking to a backend; passive health feedback."""
        if self.counters is not None:
            self.counters.count_upstream_error(ex.pool_name, error.reason)
        backend = ex.backend
        # A kept-alive connection the backend had closed, or a reset mid-body, says little
        # about the backend's health; the rest counts against it.
        if backend is not None and not (
            isinstance(error, UpstreamLost) and (ex.reused or ex.response_started)
        ):
            self.ejector.failed(backend, ex.live)
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
