"""gRPC origin for the HTTP/2 part of run.py: `python grpc_backend.py PORT`.

A grpcio server (grpc.aio, one event loop, 127.0.0.1 only, no TLS) with a generic
handler, no generated code:

- `/bench.Echo/Echo`: unary, answers the request's bytes unchanged;
- `/bench.Echo/Count`: unary, answers how many Echo calls it has answered, 8 bytes big
  endian (the harness compares it with the calls h2load counted as answered: h2load does
  not read `grpc-status`);
- `grpc.health.v1.Health/Check`: grpcio's health service, SERVING for the service `""`
  (what splitter probes an `h2c` pool's backends with).
"""

import asyncio
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

calls = 0


async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    global calls
    calls += 1
    return request


async def count(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return calls.to_bytes(8, "big")


async def main(port: int) -> None:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "bench.Echo",
                {
                    "Echo": grpc.unary_unary_rpc_method_handler(echo),
                    "Count": grpc.unary_unary_rpc_method_handler(count),
                },
            ),
        )
    )
    health = health_aio.HealthServicer()
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    if server.add_insecure_port(f"127.0.0.1:{port}") != port:
        sys.exit(f"cannot listen on 127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
