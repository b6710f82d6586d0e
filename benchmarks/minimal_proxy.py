"""The floor for a Python proxy: `python minimal_proxy.py PORT BACKEND_PORT`.

A reference target for benchmarks/run.py (`--targets ...,minimal`), not a proxy to use:
asyncio protocols on uvloop, requests parsed with httptools (method, target, headers) and
sent on to the backend with X-Forwarded-For added, one backend connection per client
connection, the response bytes passed back unparsed. No routing, no validation, no
limits, no timeouts, no body streaming rules, no logging, no metrics. What splitter does
on top of this is its own cost; what this costs is the price of Python + uvloop.
"""

import asyncio
import sys

import httptools
import uvloop


class Upstream(asyncio.Protocol):
    def __init__(self, client: "Client") -> None:
        self.client = client

    def data_received(self, data: bytes) -> None:
        self.client.transport.write(data)

    def connection_lost(self, exc: object) -> None:
        self.client.transport.close()


class Client(asyncio.Protocol):
    def __init__(self, backend_port: int) -> None:
        self.backend_port = backend_port
        self.parser = httptools.HttpRequestParser(self)
        self.upstream: asyncio.Transport | None = None
        self.waiting: list[bytes] = []
        self.lines: list[bytes] = []
        self.url = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.peer = transport.get_extra_info("peername")[0].encode()
        asyncio.get_running_loop().create_task(self.connect())

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        self.upstream, _ = await loop.create_connection(
            lambda: Upstream(self), "127.0.0.1", self.backend_port
        )
        if self.waiting:
            self.upstream.writelines(self.waiting)
            self.waiting = []

    def send(self, data: bytes) -> None:
        if self.upstream is None:
            self.waiting.append(data)
        else:
            self.upstream.write(data)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_message_begin(self) -> None:
        self.lines = []
        self.url = b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.lines.append(name + b": " + value + b"\r\n")

    def on_headers_complete(self) -> None:
        method = self.parser.get_method()
        self.send(
            method
            + b" "
            + self.url
            + b" HTTP/1.1\r\n"
            + b"".join(self.lines)
            + b"X-Forwarded-For: "
            + self.peer
            + b"\r\n\r\n"
        )

    def on_body(self, body: bytes) -> None:
        self.send(body)

    def connection_lost(self, exc: object) -> None:
        if self.upstream is not None:
            self.upstream.close()


async def main(port: int, backend_port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Client(backend_port), "127.0.0.1", port, backlog=4096)
    print(f"minimal proxy: listening on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]), int(sys.argv[2])))
