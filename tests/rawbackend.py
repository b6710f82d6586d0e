"""`RawBackend`: an HTTP/1.1 test backend that records every byte it receives.

Tests put splitter in front of it so that "never forwarded" can be checked as "the backend
received nothing", and so that a backend can answer with exact bytes (garbage, conflicting
framing, a short body) and then keep, close or reset its connection.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests.support import LOCALHOST, SplitterProc, pools_config, start_splitter

HEALTH_PREFIX = b"GET /healthz "
LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset
DRAIN = "drain"  # in a script: from here on, record what the connection sends until it ends

# A scripted reply: bytes are written (and drained), a float is a pause in seconds, DRAIN
# ends the script and reads everything else the connection carries (a tunnel after a 101).
Script = Sequence[bytes | float | str]


def _health_only(raw: bytes) -> bool:
    parts = raw.split(b"\r\n\r\n")
    if parts[-1] != b"":
        return False
    return all(p.startswith(HEALTH_PREFIX) for p in parts[:-1])


class RawBackend:
    """An HTTP/1.1 backend on 127.0.0.1 that records the raw bytes of each connection.

    Default: answers every request `200` with the request's X-Request-Id as the body
    (keep-alive; bodies framed by Content-Length or chunked are read). With `reply`, each
    request that is not a health check gets those exact bytes; then `after` says what
    happens to the connection: "keep" (read the next request), "close" (a FIN) or "reset"
    (SO_LINGER 0), `linger` seconds later. `reply` may also be a function of the request
    head (its body is read first) returning a `Script`, or None for the default answer.
    Health checks (`GET /healthz`) always get a 200 and are left out of `proxied()`,
    `request_counts()` and `connections()`.
    """

    OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n"

    def __init__(
        self,
        reply: bytes | Callable[[bytes], Script | None] | None = None,
        after: str = "keep",
        linger: float = 0.0,
    ) -> None:
        assert after in ("keep", "close", "reset")
        self.reply = reply
        self.after = after
        self.linger = linger
        self.conns: list[bytearray] = []  # every byte received, per connection
        self.requests: list[int] = []  # requests other than health checks, per connection
        self.request_heads: list[list[bytes]] = []  # their heads, per connection
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(5), "raw backend did not start"
        self.url = f"http://{LOCALHOST}:{self.port}"

    def __repr__(self) -> str:
        return f"<RawBackend {self.url}>"

    # -- lifecycle

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            asyncio.start_server(self._handle, LOCALHOST, 0, limit=1 << 22)
        )
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self.loop.run_forever()
        server.close()
        tasks = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
        for task in tasks:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    def stop(self) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)

    # -- what arrived

    def received(self) -> bytes:
        """Every byte received so far, health checks included."""
        with self._lock:
            return b"".join(bytes(c) for c in self.conns)

    def proxied(self) -> list[bytes]:
        """The bytes of every connection that carried anything but health checks."""
        with self._lock:
            raw = [bytes(c) for c in self.conns]
        return [r for r in raw if r and not _health_only(r)]

    def proxied_bytes(self) -> bytes:
        return b"".join(self.proxied())

    def request_counts(self) -> list[int]:
        """Per connection that carried any, the number of requests (health checks aside)."""
        with self._lock:
            return [n for n in self.requests if n]

    def heads(self) -> list[bytes]:
        """The head of every request other than a health check, as received."""
        with self._lock:
            return [head for heads in self.request_heads for head in heads]

    def connections(self) -> list[tuple[bytes, list[bytes]]]:
        """Per connection that carried a request other than a health check: every byte it
        received, and the heads of those requests in order."""
        with self._lock:
            pairs = [
                (bytes(c), list(h)) for c, h in zip(self.conns, self.request_heads, strict=True)
            ]
        return [(raw, heads) for raw, heads in pairs if heads]

    def reset(self) -> None:
        with self._lock:  # open connections keep recording into their (emptied) buffers
            for rec in self.conns:
                rec.clear()
            for heads in self.request_heads:
                heads.clear()

    # -- serving

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        rec = bytearray()
        with self._lock:
            self.conns.append(rec)
            index = len(self.requests)
            self.requests.append(0)
            self.request_heads.append([])

        async def recorded(read: Awaitable[bytes]) -> bytes:
            """Await a read of `reader`, keeping what it got (a partial read too)."""
            try:
                data = await read
            except asyncio.IncompleteReadError as exc:
                rec.extend(exc.partial)
                raise
            rec.extend(data)
            return data

        def until(sep: bytes) -> Awaitable[bytes]:
            return recorded(reader.readuntil(sep))

        def exactly(n: int) -> Awaitable[bytes]:
            return recorded(reader.readexactly(n))

        try:
            while True:
                head = await until(b"\r\n\r\n")
                if head.startswith(HEALTH_PREFIX):
                    writer.write(self.OK % 2 + b"ok")
                    await writer.drain()
                    continue
                with self._lock:
                    self.requests[index] += 1
                    self.request_heads[index].append(head)
                request_id, length, chunked = b"ok", 0, False
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    lname = name.strip().lower()
                    if lname == b"content-length":
                        length = int(value.strip())
                    elif lname == b"transfer-encoding" and b"chunked" in value.lower():
                        chunked = True
                    elif lname == b"x-request-id":
                        request_id = value.strip()
                if chunked:
                    while True:
                        size = int((await until(b"\r\n")).split(b";")[0].strip(), 16)
                        if size == 0:
                            while await until(b"\r\n") != b"\r\n":
                                pass
                            break
                        await exactly(size + 2)
                elif length:
                    await exactly(length)
                reply = self.reply
                if callable(reply):
                    script = reply(head)
                    if script is None:
                        writer.write(self.OK % len(request_id) + request_id)
                        await writer.drain()
                        continue
                    if await self._play(script, writer, lambda: recorded(reader.read(65536))):
                        break  # drained: the connection has ended
                    continue
                if reply is None:
                    writer.write(self.OK % len(request_id) + request_id)
                    await writer.drain()
                    continue
                writer.write(reply)
                await writer.drain()
                if self.after == "keep":
                    continue
                if self.linger:
                    await asyncio.sleep(self.linger)
                if self.after == "reset":
                    await asyncio.sleep(0.1)  # the bytes reach splitter before the reset
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
                    writer.transport.abort()
                break
        except (
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            asyncio.CancelledError,
            ConnectionError,
            ValueError,
        ):
            pass
        finally:
            # the reader may still hold bytes that arrived with the close
            try:
                rest = reader._buffer  # type: ignore[attr-defined]
                if rest:
                    rec.extend(bytes(rest))
                    rest.clear()
            except AttributeError:
                pass
            writer.close()

    @staticmethod
    async def _play(
        script: Script, writer: asyncio.StreamWriter, read: Callable[[], Awaitable[bytes]]
    ) -> bool:
        """Play a script; True when it ended with DRAIN (the connection is then over)."""
        for step in script:
            if isinstance(step, bytes):
                writer.write(step)
                await writer.drain()
            elif isinstance(step, float):
                await asyncio.sleep(step)
            elif step == DRAIN:
                while await read():
                    pass
                return True
            else:
                raise ValueError(f"unknown script step {step!r}")
        return False


@contextmanager
def guarded_splitter(workdir: Path) -> Iterator[tuple[RawBackend, SplitterProc]]:
    """One splitter (default limits) in front of one RawBackend; both stopped after, and
    splitter's stderr printed (pytest shows it when a test fails)."""
    backend = RawBackend()
    proc = None
    try:
        proc = start_splitter(pools_config({"main": backend.url}, {"main": 100}), workdir)
        yield backend, proc
    finally:
        if proc is not None:
            code = proc.stop()
            print(f"--- {proc!r} exit={code} stderr:\n{proc.stderr_text()[-4000:]}")
        backend.stop()
