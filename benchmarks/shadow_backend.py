"""A JSON backend for the shadow benchmark (benchmarks/shadow.py):

    python shadow_backend.py PORT [--delay S] [--hang]

asyncio protocols (on uvloop when it is installed), HTTP/1.1 keep-alive; every request is
answered 200 with the same small JSON body and content-type as the nginx backend of
shadow.py (`BODY`), so that splitter's comparison finds the answers the same. Requests are
assumed body-less (wrk, h2load and splitter's copies of them send GET).

- `--delay S`: every answer but GET /healthz's is sent S seconds after its request
  arrived, on a timer: any number of requests wait at once, none queues behind another.
- `--hang`: every request but GET /healthz is read and never answered; the connection
  stays open until the peer closes it (a shadow that accepts and never replies). The
  health checks pass, so that splitter keeps sending copies to it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

# The answer of every backend in the shadow benchmark (nginx serves the same bytes).
BODY = b'{"id": 1, "name": "widget", "price": 10, "stock": 5}\n'
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(BODY)).encode()
    + b"\r\n\r\n"
    + BODY
)
HEALTH = b"GET /healthz "


class Backend(asyncio.Protocol):
    def __init__(self, delay: float, hang: bool) -> None:
        self.delay, self.hang = delay, hang
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.rfind(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > 1 << 20:  # not HTTP: drop it
                self.buf = b""
            return
        heads = self.buf[: end + 4].split(b"\r\n\r\n")[:-1]
        self.buf = self.buf[end + 4 :]
        if self.hang:  # only the health checks get an answer
            n = sum(1 for h in heads if h.startswith(HEALTH))
            if n and self.transport is not None:
                self.transport.write(RESPONSE * n)
            return
        if not self.delay or all(h.startswith(HEALTH) for h in heads):
            if self.transport is not None:
                self.transport.write(RESPONSE * len(heads))
            return
        loop = asyncio.get_running_loop()
        loop.call_later(self.delay, self._answer, len(heads))

    def _answer(self, n: int) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(RESPONSE * n)


async def main(port: int, delay: float, hang: bool) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Backend(delay, hang), "127.0.0.1", port, backlog=4096)
    mode = "hang" if hang else f"delay {delay}s"
    print(f"shadow_backend: 127.0.0.1:{port} ({mode})", file=sys.stderr, flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("port", type=int)
    ap.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    ap.add_argument("--hang", action="store_true", help="never answer but GET /healthz")
    a = ap.parse_args()
    try:
        import uvloop

        run = uvloop.run
    except ImportError:
        run = asyncio.run
    try:
        run(main(a.port, a.delay, a.hang))
    except KeyboardInterrupt:
        pass
