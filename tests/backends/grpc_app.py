"""A real gRPC server (grpcio, no generated code) for the tests and the demo: the methods
take and give raw bytes.

    /echo.Echo/Say       unary: answers b"<pool>:" + the request; with FAIL_RATE (0..1)
                         that share of calls fails with UNAVAILABLE ("canary broken")
    /echo.Echo/Count     server streaming: the request is a decimal N, N messages back
    /echo.Echo/Meta      unary: answers the request's metadata as "key=value" lines
    grpc.health.v1       the standard health service, SERVING

    python -m tests.backends.grpc_app --port P --pool NAME   (prints "ready" when serving)
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import threading
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc


def _handlers(pool: str, fail_rate: float) -> Any:
    def say(request: bytes, context: Any) -> bytes:
        if fail_rate and random.random() < fail_rate:
            context.abort(grpc.StatusCode.UNAVAILABLE, "canary broken")
        return pool.encode() + b":" + request

    def count(request: bytes, context: Any) -> Any:
        for i in range(int(request or b"0")):
            yield b"%d" % i

    def meta(request: bytes, context: Any) -> bytes:
        return b"\n".join(
            f"{k}={v}".encode() for k, v in context.invocation_metadata() if isinstance(v, str)
        )

    return grpc.method_handlers_generic_handler(
        "echo.Echo",
        {
            "Say": grpc.unary_unary_rpc_method_handler(say),
            "Count": grpc.unary_stream_rpc_method_handler(count),
            "Meta": grpc.unary_unary_rpc_method_handler(meta),
        },
    )


def serve(
    port: int, pool: str, fail_rate: float = 0.0, tls: tuple[str, str] | None = None
) -> tuple[Any, Any]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers((_handlers(pool, fail_rate),))
    checker = health.HealthServicer()
    checker.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    if tls is None:
        bound = server.add_insecure_port(f"127.0.0.1:{port}")
    else:  # h2 over TLS (gRPC servers offer only h2 by ALPN)
        with open(tls[0], "rb") as cert, open(tls[1], "rb") as key:
            credentials = grpc.ssl_server_credentials([(key.read(), cert.read())])
        bound = server.add_secure_port(f"127.0.0.1:{port}", credentials)
    server.start()
    return server, bound


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pool", default=os.environ.get("POOL", "grpc"))
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"), help="serve over TLS")
    args = parser.parse_args(argv)
    fail_rate = float(os.environ.get("FAIL_RATE", "0"))
    server, _ = serve(args.port, args.pool, fail_rate, tuple(args.tls) if args.tls else None)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    print("ready", flush=True)
    done.wait()
    server.stop(1).wait()
    sys.exit(0)


if __name__ == "__main__":
    main()
