"""Fallback benchmark backend (used when nginx is missing): `python backend.py PORT`.

Plain asyncio, HTTP/1.1 keep-alive, answers every request with 200 "blue\\n". Requests
are assumed body-less (wrk and health checks send GET).
"""

import asyncio
import sys

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nblue\n"


class Blue(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buf = transport, b""

    def data_received(self, data):
        self.buf += data
        n = self.buf.count(b"\r\n\r\n")
        if n:
            self.buf = self.buf[self.buf.rindex(b"\r\n\r\n") + 4 :]
            self.transport.write(RESPONSE * n)


async def main(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(Blue, "127.0.0.1", port, backlog=1024)
    print(f"backend: listening on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main(int(sys.argv[1])))
    except KeyboardInterrupt:
        pass
