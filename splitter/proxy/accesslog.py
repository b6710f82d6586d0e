"""The access log: one JSON line per finished request on stdout, written in batches.

Lines are collected and written when LOG_FLUSH_BYTES have gathered or at the listener's
next sweep (at most half a second later), so a busy proxy makes few writes.
"""

from __future__ import annotations

import sys
import time
from typing import Final

import orjson

from splitter.proxy.exchange import Exchange

__all__ = ["AccessLog"]

LOG_FLUSH_BYTES: Final = 64 * 1024


class AccessLog:
    def __init__(self) -> None:
        self.buffer: list[bytes] = []
        self.size = 0
        self._last_ms = 0
        self._last_text = ""

    def observe(self, ex: Exchange) -> None:
        req = ex.req
        entry = {
            "time": self._iso_time(ex.finished),
            "client": ex.conn.peer.decode("latin-1"),  # the connection's peer
            "client_addr": ex.client_addr,  # whose request: see splitter.proxy.clientaddr
            "method": req.method.decode("latin-1"),
            "target": req.target.decode("latin-1"),
            "status": ex.status,
            "route": ex.route_name,
            "pool": ex.pool_name,
            "backend": ex.backend_url,
            "duration": ex.finished - ex.started,
            "bytes": ex.body_bytes,
            "request_id": req.request_id.decode("latin-1") if req.request_id else None,
        }
        if req.version == "2":  # an HTTP/2 stream; HTTP/1.x requests keep the fields above
            entry["protocol"] = "HTTP/2"
        if ex.grpc_status >= 0:
            entry["grpc_status"] = ex.grpc_status
        line = orjson.dumps(entry)
        self.buffer.append(line)
        self.size += len(line) + 1
        if self.size > LOG_FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        data = b"\n".join(self.buffer) + b"\n"
        self.buffer = []
        self.size = 0
        try:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        except (OSError, ValueError):
            pass

    def _iso_time(self, now: float) -> str:
        """RFC 3339 UTC with milliseconds, formatted once per millisecond at most."""
        ms = int(now * 1000)
        if ms != self._last_ms:
            self._last_ms = ms
            second, millis = divmod(ms, 1000)
            self._last_text = (
                time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)) + f".{millis:03d}Z"
            )
        return self._last_text
