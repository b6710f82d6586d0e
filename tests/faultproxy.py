"""A TCP fault proxy for end-to-end tests: sits between splitter and a backend.

    with FaultProxy(backend.port) as fp:
        ...  # point splitter at http://127.0.0.1:{fp.port}
        fp.latency = 0.2       # seconds before each chunk is forwarded, both directions
        fp.bandwidth = 50_000  # bytes/s per connection and direction (None: no cap)
        fp.reset_after = 1000  # after this many bytes from the backend: reset (SO_LINGER 0)
        fp.blackhole = True    # accept and read, never forward nor answer
        fp.refuse = True       # close each new connection at once

The faults are plain attributes, read for every chunk, so setting one affects the
connections already open as well as new ones. The proxy runs its own event loop in a
background thread; everything listens on 127.0.0.1 only. `accepted` counts the
connections accepted so far.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading

LOCALHOST = "127.0.0.1"
_LINGER_RESET = struct.pack("ii", 1, 0)
_READ_SIZE = 65536


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset instead of a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    writer.transport.abort()


class FaultProxy:
    def __init__(self, target_port: int, target_host: str = LOCALHOST) -> None:
        self.target = (target_host, target_port)
        self.latency = 0.0
        self.bandwidth: float | None = None
        self.reset_after: int | None = None
        self.blackhole = False
        self.refuse = False
        self.accepted = 0
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"<FaultProxy :{self.port} -> {self.target[0]}:{self.target[1]}>"

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def clear(self) -> None:
        """No faults any more (connections already cut stay cut)."""
        self.latency, self.bandwidth, self.reset_after = 0.0, None, None
        self.blackhole = self.refuse = False

    # -- lifecycle

    def start(self) -> FaultProxy:
        if self._thread is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._run, name=repr(self), daemon=True)
            self._thread.start()
            if not self._ready.wait(5):
                raise RuntimeError("fault proxy did not start")
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)

    def _run(self) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(asyncio.start_server(self._accept, LOCALHOST, 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            for task in list(self._tasks):
                task.cancel()
            loop.run_until_complete(asyncio.gather(*self._tasks, return_exceptions=True))
            loop.run_until_complete(server.wait_closed())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    # -- serving

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        self._writers.add(writer)
        upstream: asyncio.StreamWriter | None = None
        try:
            if self.refuse:
                return
            if self.blackhole:
                while await reader.read(_READ_SIZE):
                    pass
                return
            up_reader, upstream = await asyncio.open_connection(*self.target)
            self._writers.add(upstream)
            pair = (writer, upstream)
            await asyncio.gather(
                self._pump(reader, upstream, pair, downstream=False),
                self._pump(up_reader, writer, pair, downstream=True),
            )
        except OSError:
            pass
        finally:
            for w in (writer, upstream):
                if w is not None:
                    self._writers.discard(w)
                    w.close()
            self._tasks.discard(task)  # type: ignore[arg-type]

    async def _pump(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
        downstream: bool,
    ) -> None:
        """Copy src to dst with the faults applied; a failure on one side resets both."""
        sent = 0
        try:
            while data := await src.read(_READ_SIZE):
                if self.blackhole:
                    continue
                if self.latency:
                    await asyncio.sleep(self.latency)
                limit = self.reset_after
                if downstream and limit is not None and sent + len(data) >= limit:
                    await self._write(dst, data[: max(0, limit - sent)])
                    await asyncio.sleep(0.05)  # let the peer read what got through
                    raise ConnectionAbortedError("reset_after")
                sent += len(data)
                await self._write(dst, data)
            if dst.can_write_eof():
                dst.write_eof()
        except (OSError, RuntimeError):
            for w in pair:
                _reset(w)

    async def _write(self, dst: asyncio.StreamWriter, data: bytes) -> None:
        while data:
            rate = self.bandwidth
            piece = data if not rate else data[: max(1, int(rate / 20))]
            data = data[len(piece) :]
            dst.write(piece)
            await dst.drain()
            if rate:
                await asyncio.sleep(len(piece) / rate)
