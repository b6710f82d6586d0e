"""Streaming benchmark backend: `python stream_backend.py PORT [SIZE_BYTES]`.

Plain asyncio, HTTP/1.1 keep-alive, stdlib only.
  GET /big     -> 200 with SIZE_BYTES zeros (default 1 GiB), Content-Length framed
  POST or PUT  -> reads and discards the body (Content-Length or chunked), then 200 "ok\\n"
  anything else -> 200 "blue\\n" (health checks, readiness probes)
"Expect: 100-continue" is answered with "100 Continue".
"""

import asyncio
import sys

CHUNK = 256 * 1024
ZEROS = bytes(CHUNK)


def reply(body: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


async def discard(reader: asyncio.StreamReader, n: int) -> None:
    while n > 0:
        data = await reader.read(min(n, CHUNK))
        if not data:
            raise ConnectionError("body cut short")
        n -= len(data)


async def discard_chunked(reader: asyncio.StreamReader) -> None:
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return
        await discard(reader, size + 2)


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, size: int) -> None:
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                return
            lines = head.decode("latin-1").split("\r\n")
            method, target = lines[0].split(" ")[:2]
            headers = {}
            for ln in lines[1:]:
                if ":" in ln:
                    k, v = ln.split(":", 1)
                    headers[k.strip().lower()] = v.strip().lower()
            if headers.get("expect") == "100-continue":
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            if "chunked" in headers.get("transfer-encoding", ""):
                await discard_chunked(reader)
            elif int(headers.get("content-length", "0") or 0):
                await discard(reader, int(headers["content-length"]))
            if method == "GET" and target.split("?")[0] == "/big":
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                    b"Content-Length: " + str(size).encode() + b"\r\n\r\n"
                )
                left = size
                while left > 0:
                    n = min(left, CHUNK)
                    writer.write(ZEROS if n == CHUNK else ZEROS[:n])
                    left -= n
                    await writer.drain()
            elif method in ("POST", "PUT"):
                writer.write(reply(b"ok\n"))
            else:
                writer.write(reply(b"blue\n"))
            await writer.drain()
            if headers.get("connection") == "close":
                return
    except (ConnectionError, ValueError, asyncio.IncompleteReadError):
        return
    finally:
        writer.close()


async def main(port: int, size: int) -> None:
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, size), "127.0.0.1", port, backlog=1024, limit=65536
    )
    print(f"stream backend: listening on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 1 << 30))
    except KeyboardInterrupt:
        pass
