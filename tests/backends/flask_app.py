"""A Flask backend for the end-to-end tests, run under gunicorn (gthread workers):

    POOL=blue BACKEND_ID=blue-1 python -m gunicorn --worker-class gthread \
        -b 127.0.0.1:5001 tests.backends.flask_app:app

Every response carries `X-Backend: <BACKEND_ID>` and `X-Pool: <POOL>`. With FAIL_EVERY=N
in the environment, every Nth `GET /` of each worker process answers 500 (a failing
release, for the statistics and the dashboard).

Routes:
    GET  /                     -> the pool name as text
    GET  /healthz              -> "ok"
    ANY  /echo, /echo/<path>   -> JSON {method, raw_uri, headers, body_len, body_sha256,
                                        pool, backend, remote_port}
                                  headers: [[name, value], ...] in received order; names are
                                  title-cased and repeated fields joined by "," (what WSGI keeps)
    POST /upload               -> streams the body in 64 KiB chunks -> JSON {bytes, sha256}
    GET  /stream?n=N&size=S    -> N chunks of S bytes of `pattern_chunk(S)` (chunked encoding;
                                  add &cl=1 for a Content-Length instead)
    GET  /sse?n=N&interval=T   -> text/event-stream, "data: <i> <time.time()>\\n\\n" every T s
    ANY  /status/<code>        -> that status, small text body (none for 204/304)
    GET  /cookies              -> three Set-Cookie headers: a=1, b=2, c=3
    GET  /redirect             -> 302 to http://other.example/elsewhere
    GET  /slow?seconds=S       -> sleeps S seconds, then "slow"
    GET  /request-id           -> JSON {request_id: X-Request-Id or null}

Faults on purpose (every route but /healthz, which stays healthy): FAIL_RATE (the share of
requests answered 500) and DELAY (seconds added to each request) from the environment, or
from the JSON file FAULT_FILE names, re-read when it changes ({"fail_rate": 0.5,
"delay": 0.2}), so a test can make a running backend fail and recover.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import time
from collections.abc import Iterator

from flask import Flask, Response, jsonify, request

CHUNK = 64 * 1024
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
_PATTERN = bytes(range(256))


def pattern_chunk(size: int) -> bytes:
    """The bytes of one /stream chunk of `size` bytes (a fixed, position-dependent pattern)."""
    return (_PATTERN * (size // 256 + 1))[:size]


def _raw_uri() -> str:
    env = request.environ
    if "RAW_URI" in env:  # gunicorn: exactly as received
        return str(env["RAW_URI"])
    if "REQUEST_URI" in env:
        return str(env["REQUEST_URI"])
    path = str(env.get("SCRIPT_NAME", "")) + str(env.get("PATH_INFO", ""))
    query = str(env.get("QUERY_STRING", ""))
    return f"{path}?{query}" if query else path


class _Faults:
    """FAIL_RATE and DELAY, from the environment or FAULT_FILE (checked by its mtime)."""

    def __init__(self) -> None:
        self.fail_rate = float(os.environ.get("FAIL_RATE", "0") or 0)
        self.delay = float(os.environ.get("DELAY", "0") or 0)
        self.path = os.environ.get("FAULT_FILE")
        self.seen = 0.0

    def current(self) -> tuple[float, float]:
        if self.path:
            try:
                mtime = os.stat(self.path).st_mtime
            except OSError:
                mtime = 0.0
            if mtime != self.seen:
                try:
                    with open(self.path) as f:
                        data = json.load(f)
                    self.fail_rate = float(data.get("fail_rate", 0))
                    self.delay = float(data.get("delay", 0))
                except (OSError, ValueError):
                    self.fail_rate = self.delay = 0.0
                # Only now: a thread that sees this mtime meanwhile reads the file too,
                # instead of answering with the faults of before.
                self.seen = mtime
        return self.fail_rate, self.delay


def create_app(pool: str | None = None, backend_id: str | None = None) -> Flask:
    pool = pool or os.environ.get("POOL", "default")
    backend_id = backend_id or os.environ.get("BACKEND_ID") or pool
    fail_every = int(os.environ.get("FAIL_EVERY") or 0)
    served = itertools.count(1)  # next() on a count is atomic under the GIL
    app = Flask(__name__)
    faults = _Faults()

    @app.before_request
    def _fault() -> Response | None:
        if request.path == "/healthz":
            return None
        fail_rate, delay = faults.current()
        if delay:
            time.sleep(delay)
        if fail_rate and random.random() < fail_rate:
            return Response("failing on purpose", status=500, mimetype="text/plain")
        return None

    @app.after_request
    def _tag(resp: Response) -> Response:
        resp.headers["X-Backend"] = backend_id
        resp.headers["X-Pool"] = pool
        return resp

    @app.get("/")
    def index() -> Response:
        if fail_every and next(served) % fail_every == 0:
            return Response(f"{pool} failed", status=500, mimetype="text/plain")
        return Response(pool, mimetype="text/plain")

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("ok", mimetype="text/plain")

    @app.route("/echo", methods=ALL_METHODS)
    @app.route("/echo/<path:anything>", methods=ALL_METHODS)
    def echo(anything: str = "") -> Response:
        digest = hashlib.sha256()
        total = 0
        stream = request.stream
        while True:
            chunk = stream.read(CHUNK)
            if not chunk:
                break
            total += len(chunk)
            digest.update(chunk)
        return jsonify(
            method=request.method,
            raw_uri=_raw_uri(),
            headers=[[k, v] for k, v in request.headers.items()],
            body_len=total,
            body_sha256=digest.hexdigest(),
            pool=pool,
            backend=backend_id,
            remote_port=request.environ.get("REMOTE_PORT"),
        )

    @app.post("/upload")
    def upload() -> Response:
        digest = hashlib.sha256()
        total = 0
        stream = request.stream
        while True:
            chunk = stream.read(CHUNK)
            if not chunk:
                break
            total += len(chunk)
            digest.update(chunk)
        return jsonify(bytes=total, sha256=digest.hexdigest())

    @app.get("/stream")
    def stream() -> Response:
        n = int(request.args.get("n", "10"))
        size = int(request.args.get("size", str(CHUNK)))
        chunk = pattern_chunk(size)

        def generate() -> Iterator[bytes]:
            for _ in range(n):
                yield chunk

        resp = Response(generate(), mimetype="application/octet-stream")
        if request.args.get("cl") == "1":
            resp.headers["Content-Length"] = str(n * size)
        return resp

    @app.get("/sse")
    def sse() -> Response:
        n = int(request.args.get("n", "5"))
        interval = float(request.args.get("interval", "0.2"))

        def generate() -> Iterator[str]:
            for i in range(n):
                if i:
                    time.sleep(interval)
                yield f"data: {i} {time.time()}\n\n"

        return Response(
            generate(),
            mimetype="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )

    @app.route("/status/<int:code>", methods=ALL_METHODS)
    def status(code: int) -> Response:
        if code in (204, 304) or code < 200:
            return Response(status=code)
        return Response(f"status {code}\n", status=code, mimetype="text/plain")

    @app.get("/cookies")
    def cookies() -> Response:
        resp = Response("cookies", mimetype="text/plain")
        for cookie in ("a=1", "b=2", "c=3"):
            resp.headers.add("Set-Cookie", cookie)
        return resp

    @app.get("/redirect")
    def redirect() -> Response:
        resp = Response("redirecting", status=302, mimetype="text/plain")
        resp.headers["Location"] = "http://other.example/elsewhere"
        resp.autocorrect_location_header = False
        return resp

    @app.get("/slow")
    def slow() -> Response:
        time.sleep(float(request.args.get("seconds", "1")))
        return Response("slow", mimetype="text/plain")

    @app.get("/request-id")
    def request_id() -> Response:
        return jsonify(request_id=request.headers.get("X-Request-Id"))

    return app


app = create_app()
