"""A small asyncio HTTP/1.1 load generator for the end-to-end tests (loopback only).

    result = run_load(port, connections=64, total=10_000, headers_fn=..., check_fn=...)
    assert result.failed == 0 and result.mismatches == 0

N keep-alive connections over raw asyncio streams, each sending its requests back to back
(one in flight per connection) until `total` requests were sent or `duration` seconds
passed, whichever comes first. With `rate`, request i is not sent before i / rate seconds
after the start: a steady load of `rate` requests per second (while the connections keep
up). Responses are parsed with httptools.HttpResponseParser.

- A request whose connection breaks (reset, EOF, timeout, parse error) after it was written
  counts as failed; the connection is then reopened.
- A connect failure counts in `connect_errors` (the request was never written, so it is
  not consumed: another attempt sends it).
- `check_fn(request_headers, status, headers, body) -> bool` judges every complete
  response; False (or an exception) counts as a mismatch. Response header names are
  lower-case; values are str; body is bytes.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import httptools

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
    uvloop = None

HeadersFn = Callable[[int], Mapping[str, str]]
CheckFn = Callable[[Mapping[str, str], int, dict[str, str], bytes], bool]

MAX_SAMPLES = 20  # failure and mismatch reasons kept (the counts are exact)


@dataclass
class LoadResult:
    sent: int = 0  # requests written
    ok: int = 0  # complete 2xx responses
    failed: int = 0  # written, but no complete response (reset, EOF, timeout, garbage)
    connect_errors: int = 0
    mismatches: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)  # reasons, capped at MAX_SAMPLES
    mismatch_samples: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)  # seconds, complete responses
    elapsed: float = 0.0
    connections_opened: int = 0

    def percentile(self, p: float) -> float:
        """The p-th percentile of the latencies (nearest rank), 0.0 when there are none."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
        return ordered[rank]

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p99(self) -> float:
        return self.percentile(99)

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed if self.elapsed else 0.0

    def summary(self) -> str:
        return (
            f"sent={self.sent} ok={self.ok} failed={self.failed} "
            f"connect_errors={self.connect_errors} mismatches={self.mismatches} "
            f"statuses={dict(self.statuses)} elapsed={self.elapsed:.2f}s "
            f"rate={self.rate:.0f}/s p50={self.p50 * 1000:.1f}ms p99={self.p99 * 1000:.1f}ms "
            f"connections_opened={self.connections_opened} failures={self.failures[:5]} "
            f"mismatch_samples={self.mismatch_samples[:3]}"
        )

    def _note_failure(self, reason: str) -> None:
        if len(self.failures) < MAX_SAMPLES:
            self.failures.append(reason)


class _Response:
    """httptools callbacks for one response at a time."""

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.complete = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True


class _Run:
    def __init__(
        self, port: int, total: int | None, duration: float | None, rate: float | None = None
    ) -> None:
        self.port = port
        self.total = total
        self.claimed = 0
        self.started = time.monotonic()
        self.deadline = self.started + duration if duration is not None else float("inf")
        self.rate = rate
        self.result = LoadResult()

    async def pace(self, index: int) -> None:
        """With a rate, wait until request `index` is due."""
        if self.rate:
            delay = self.started + index / self.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

    def claim(self) -> int | None:
        """The index of the next request to send, or None when the run is over."""
        if (self.total is not None and self.claimed >= self.total) or (
            time.monotonic() >= self.deadline
        ):
            return None
        self.claimed += 1
        return self.claimed - 1


async def _worker(
    run: _Run,
    path: str,
    headers_fn: HeadersFn | None,
    check_fn: CheckFn | None,
    connect_timeout: float,
    request_timeout: float,
) -> None:
    res = run.result
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    host = f"127.0.0.1:{run.port}"
    try:
        while (i := run.claim()) is not None:
            await run.pace(i)
            if writer is None:
                try:
                    async with asyncio.timeout(connect_timeout):
                        reader, writer = await asyncio.open_connection("127.0.0.1", run.port)
                    res.connections_opened += 1
                except (OSError, TimeoutError) as exc:
                    run.claimed -= 1  # never written: not consumed
                    res.connect_errors += 1
                    res._note_failure(f"connect: {exc!r}"[:120])
                    await asyncio.sleep(0.05)
                    continue
            assert reader is not None
            extra = dict(headers_fn(i)) if headers_fn is not None else {}
            head = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: loadgen\r\n"
            head += "".join(f"{k}: {v}\r\n" for k, v in extra.items()) + "\r\n"
            resp = _Response()
            parser = httptools.HttpResponseParser(resp)
            started = time.perf_counter()
            try:
                async with asyncio.timeout(request_timeout):
                    writer.write(head.encode("latin-1"))
                    res.sent += 1
                    await writer.drain()
                    while not resp.complete:
                        data = await reader.read(65536)
                        if not data:
                            raise ConnectionError("EOF before a complete response")
                        parser.feed_data(data)
            except (OSError, TimeoutError, httptools.HttpParserError) as exc:
                res.failed += 1
                res._note_failure(f"request {i}: {type(exc).__name__}: {exc}"[:160])
                writer.transport.abort()
                reader = writer = None
                continue
            res.latencies.append(time.perf_counter() - started)
            status = parser.get_status_code()
            res.statuses[status] += 1
            if 200 <= status < 300:
                res.ok += 1
            if check_fn is not None:
                body = b"".join(resp.body)
                try:
                    good = check_fn(extra, status, resp.headers, body)
                except Exception as exc:
                    good = False
                    body = f"{body!r} ({exc!r})".encode()
                if not good:
                    res.mismatches += 1
                    if len(res.mismatch_samples) < MAX_SAMPLES:
                        res.mismatch_samples.append(
                            f"sent {extra} got {status} {resp.headers} {body[:80]!r}"[:300]
                        )
            # (httptools resets should_keep_alive() once a message is complete)
            if "close" in resp.headers.get("connection", "").lower() or (
                parser.get_http_version() != "1.1"
            ):
                writer.close()
                reader = writer = None
    finally:
        if writer is not None:
            writer.transport.abort()


async def run_load_async(
    port: int,
    connections: int,
    total: int | None = None,
    duration: float | None = None,
    path: str = "/",
    headers_fn: HeadersFn | None = None,
    check_fn: CheckFn | None = None,
    connect_timeout: float = 5,
    request_timeout: float = 10,
    rate: float | None = None,
) -> LoadResult:
    """`run_load` inside a running event loop."""
    if total is None and duration is None:
        raise ValueError("give total, duration or both: a load must stop by itself")
    run = _Run(port, total, duration, rate)
    started = time.perf_counter()
    workers = [
        asyncio.create_task(
            _worker(run, path, headers_fn, check_fn, connect_timeout, request_timeout)
        )
        for _ in range(connections)
    ]
    await asyncio.gather(*workers)
    run.result.elapsed = time.perf_counter() - started
    return run.result


def run_load(
    port: int,
    connections: int,
    total: int | None = None,
    duration: float | None = None,
    path: str = "/",
    headers_fn: HeadersFn | None = None,
    check_fn: CheckFn | None = None,
    connect_timeout: float = 5,
    request_timeout: float = 10,
    rate: float | None = None,
) -> LoadResult:
    """Run a load to 127.0.0.1:port on a new event loop (uvloop when available) and return
    its LoadResult; blocks until done. Safe to call from a thread."""
    factory = uvloop.new_event_loop if uvloop is not None else None
    coro = run_load_async(
        port, connections, total, duration, path, headers_fn, check_fn,
        connect_timeout, request_timeout, rate,
    )  # fmt: skip
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)
