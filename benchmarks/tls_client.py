#!/usr/bin/env python3
"""New TLS connections per second, one request each, nothing resumed (stdlib only).

    python benchmarks/tls_client.py PORT [--seconds 5] [--max 200000] [--threads 4]
                                    [--start UNIX_TIME] [--tls 1.3|1.2] [--timeout 5]

Each thread loops until the deadline (or until --max connections have been started, over
all threads): connect to 127.0.0.1:PORT, a full TLS handshake (every connection is a fresh
SSLSocket that is never given a session, so nothing can be resumed; the certificate is not
verified), `GET /` with `Connection: close`, read the answer to the end, close. A connection
counts as ok when it got a complete 200. --start (unix time) makes several copies of this
script, started one after the other, begin together. Prints one JSON line: ok, failed,
reused (handshakes the server resumed: 0 unless something is wrong), seconds (from the
start to the last thread's end), versions (the negotiated protocol versions) and the first
few errors.

wrk is not used for this: with `Connection: close` it keeps each connection's TLS session
and resumes it on the next connection (TLS 1.3 session tickets), so it measures
resumptions, not full handshakes.
"""

from __future__ import annotations

import argparse
import json
import socket
import ssl
import threading
import time

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


def complete_200(data: bytes) -> bool:
    """data is a whole HTTP/1.1 200 answer: the head, and the body up to Content-Length
    (or to the end of the connection without one)."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep or not head.startswith(b"HTTP/1.1 200 "):
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            try:
                return len(body) >= int(value.strip())
            except ValueError:
                return False
    return True


def client_context(version: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    tls = ssl.TLSVersion.TLSv1_3 if version == "1.3" else ssl.TLSVersion.TLSv1_2
    ctx.minimum_version = ctx.maximum_version = tls
    return ctx


def one(ctx: ssl.SSLContext, port: int, timeout: float) -> tuple[bool, bool, str]:
    """One connection: (ok, resumed, protocol version)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(REQUEST)
            data = b""
            try:
                while chunk := s.recv(65536):
                    data += chunk
            except (ssl.SSLEOFError, ConnectionResetError):
                pass  # the server closed without close_notify: judge what arrived
            return complete_200(data), s.session_reused, s.version() or "?"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("port", type=int)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--max", type=int, default=200_000, help="connections at most, in all")
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--start", type=float, help="unix time to begin at (default: now)")
    ap.add_argument("--tls", choices=["1.2", "1.3"], default="1.3")
    ap.add_argument("--timeout", type=float, default=5.0, help="per connection, seconds")
    args = ap.parse_args()
    ctx = client_context(args.tls)
    if args.start:
        time.sleep(max(0.0, min(args.start - time.time(), 30.0)))
    lock = threading.Lock()
    totals = {"ok": 0, "failed": 0, "reused": 0, "started": 0}
    versions: dict[str, int] = {}
    errors: list[str] = []
    t0 = time.monotonic()
    deadline = t0 + args.seconds

    def loop() -> None:
        while time.monotonic() < deadline:
            with lock:
                if totals["started"] >= args.max:
                    return
                totals["started"] += 1
            try:
                ok, reused, version = one(ctx, args.port, args.timeout)
            except (OSError, ssl.SSLError) as e:
                ok, reused, version = False, False, ""
                with lock:
                    if len(errors) < 5:
                        errors.append(f"{type(e).__name__}: {e}")
            with lock:
                totals["ok" if ok else "failed"] += 1
                totals["reused"] += reused
                if version:
                    versions[version] = versions.get(version, 0) + 1

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.seconds + args.timeout * 3 + 10)
    seconds = time.monotonic() - t0
    print(
        json.dumps(
            {
                "ok": totals["ok"],
                "failed": totals["failed"],
                "reused": totals["reused"],
                "seconds": round(seconds, 3),
                "versions": versions,
                "errors": errors,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
