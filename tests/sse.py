"""A server-sent events client for the tests: `GET /api/v1/stream` read in a thread.

    with SseClient(sp.admin_url) as stream:
        kind, data, at = stream.next("stats", timeout=3)

Every event is kept with the monotonic time it arrived (`events`), comments too (kind
":", data the comment text), so tests can time them and look back.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Mapping
from typing import Any

Event = tuple[str, Any, float]  # kind, parsed data, time.monotonic() at arrival


class SseClient:
    def __init__(
        self,
        admin_url: str,
        path: str = "/api/v1/stream",
        headers: Mapping[str, str] | None = None,
        timeout: float = 30,
    ) -> None:
        hostport = admin_url.removeprefix("http://")
        host, _, port = hostport.rpartition(":")
        self.conn = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=timeout)
        self.conn.request("GET", path, headers={"Accept": "text/event-stream", **(headers or {})})
        self.response = self.conn.getresponse()
        self.status = self.response.status
        self.headers = {k.lower(): v for k, v in self.response.getheaders()}
        self.events: list[Event] = []
        self.raw = bytearray()
        self.ended = threading.Event()
        self._new = threading.Condition()
        self._thread: threading.Thread | None = None
        if self.status == 200:
            self._thread = threading.Thread(target=self._read, daemon=True)
            self._thread.start()
        else:
            self.body = self.response.read()
            self.conn.close()
            self.ended.set()

    def __enter__(self) -> SseClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.conn.sock is not None:
                self.conn.sock.shutdown(socket.SHUT_RDWR)
        self.conn.close()
        if self._thread is not None:
            self._thread.join(5)

    def _read(self) -> None:
        kind, data = "message", []
        try:
            while True:
                line = self.response.readline()
                if not line:
                    break
                self.raw += line
                text = line.decode().rstrip("\r\n")
                if text.startswith(":"):
                    self._add(":", text[1:].strip())
                elif text.startswith("event:"):
                    kind = text[6:].strip()
                elif text.startswith("data:"):
                    data.append(text[5:].strip())
                elif text == "":
                    if data:
                        self._add(kind, json.loads("\n".join(data)))
                    kind, data = "message", []
        except Exception:  # closed under it (close()), reset, or not a stream: it ended
            pass
        finally:
            self.ended.set()
            with self._new:
                self._new.notify_all()

    def _add(self, kind: str, data: Any) -> None:
        with self._new:
            self.events.append((kind, data, time.monotonic()))
            self._new.notify_all()

    def next(self, kind: str, timeout: float = 5, after: int | None = None) -> Event:
        """The first event of `kind` at index >= `after` (default: any not yet returned by
        `next`); AssertionError after `timeout` seconds."""
        start = self._cursor if after is None else after
        deadline = time.monotonic() + timeout
        with self._new:
            while True:
                for i in range(start, len(self.events)):
                    if self.events[i][0] == kind:
                        if after is None:
                            self._cursor = i + 1
                        return self.events[i]
                left = deadline - time.monotonic()
                if left <= 0 or self.ended.is_set():
                    raise AssertionError(
                        f"no {kind!r} event within {timeout}s; got "
                        f"{[e[0] for e in self.events][-20:]} (ended: {self.ended.is_set()})"
                    )
                self._new.wait(left)

    _cursor = 0

    def find(self, kind: str, predicate: Any, timeout: float = 5) -> Event:
        """The first event of `kind` whose data satisfies `predicate`, from the start."""
        deadline = time.monotonic() + timeout
        with self._new:
            while True:
                for event in self.events:
                    if event[0] == kind and predicate(event[1]):
                        return event
                left = deadline - time.monotonic()
                if left <= 0 or self.ended.is_set():
                    raise AssertionError(f"no matching {kind!r} event within {timeout}s")
                self._new.wait(left)

    def mark(self) -> int:
        """The index the next event will have (for `next(..., after=mark)`)."""
        with self._new:
            return len(self.events)
