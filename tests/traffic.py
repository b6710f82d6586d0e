"""Sticky clients for the end-to-end tests: many simulated clients, each keeping the cookie
splitter gave it, sending requests through a few keep-alive connections at a bounded rate.

    with Traffic(port, clients=300, rate=150, seconds=60) as traffic:
        ...                                  # it runs in the background meanwhile
    traffic.results                          # [(time, client, pool, status), ...]

Every run is bounded in time and in count and stops by itself (or when the block ends).
The pool of a response is read from its X-Pool header (the Flask backends set it); a
failed request (reset, timeout) is recorded with status 0.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from collections.abc import Mapping
from types import TracebackType

LOCALHOST = "127.0.0.1"


class Traffic:
    def __init__(
        self,
        port: int,
        clients: int = 200,
        rate: float = 100.0,
        seconds: float = 60.0,
        threads: int = 4,
        path: str = "/",
        headers: Mapping[str, str] | None = None,
        max_requests: int = 100_000,
        source: str = LOCALHOST,
        cookies: list[str] | None = None,
    ) -> None:
        self.port = port
        self.clients = clients
        self.rate = rate
        self.seconds = seconds
        self.threads = threads
        self.path = path
        self.headers = dict(headers or {})
        self.max_requests = max_requests
        self.source = source  # the clients' address (any of 127.0.0.0/8)
        self.cookies: dict[int, str] = dict(enumerate(cookies or []))
        self.results: list[tuple[float, int, str, int]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self._sent = 0

    def __enter__(self) -> Traffic:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        for n in range(self.threads):
            worker = threading.Thread(target=self._run, args=(n,), daemon=True)
            worker.start()
            self._workers.append(worker)

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(10)

    def wait(self) -> None:
        """Until the run ends by itself (its time or its count)."""
        for worker in self._workers:
            worker.join(self.seconds + 15)

    def _claim(self) -> bool:
        with self._lock:
            if self._sent >= self.max_requests:
                return False
            self._sent += 1
            return True

    def _run(self, n: int) -> None:
        mine = [c for c in range(self.clients) if c % self.threads == n]
        interval = self.threads / self.rate if self.rate > 0 else 0.0
        end = time.monotonic() + self.seconds
        conn: http.client.HTTPConnection | None = None
        i = 0
        next_at = time.monotonic()
        while not self._stop.is_set() and time.monotonic() < end and mine:
            if not self._claim():
                break
            client = mine[i % len(mine)]
            i += 1
            headers = dict(self.headers)
            cookie = self.cookies.get(client)
            if cookie:
                headers["Cookie"] = cookie
            status, pool = 0, ""
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(
                        LOCALHOST, self.port, timeout=10, source_address=(self.source, 0)
                    )
                conn.request("GET", self.path, headers=headers)
                response = conn.getresponse()
                response.read()
                status = response.status
                pool = response.getheader("X-Pool") or ""
                set_cookie = response.getheader("Set-Cookie")
                if set_cookie:
                    self.cookies[client] = set_cookie.split(";", 1)[0]
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                if conn is not None:
                    conn.close()
                conn = None
            with self._lock:
                self.results.append((time.monotonic(), client, pool, status))
            next_at += interval
            pause = next_at - time.monotonic()
            if pause > 0:
                self._stop.wait(pause)
            else:
                next_at = time.monotonic()
        if conn is not None:
            conn.close()

    # -- reading the results ------------------------------------------------------------

    def snapshot(self) -> list[tuple[float, int, str, int]]:
        with self._lock:
            return list(self.results)

    def count(self, pool: str | None = None, status: int | None = None) -> int:
        return sum(
            1
            for _, _, p, s in self.snapshot()
            if (pool is None or p == pool) and (status is None or s == status)
        )

    def statuses(self) -> Counter[int]:
        return Counter(s for _, _, _, s in self.snapshot())

    def pools_of_clients(self, since: float = 0.0) -> dict[int, str]:
        """Each client's pool in its last request after `since` (time.monotonic())."""
        out: dict[int, str] = {}
        for t, client, pool, status in self.snapshot():
            if t >= since and status:
                out[client] = pool
        return out
