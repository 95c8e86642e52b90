"""A gRPC echo backend for the e2e tests (h2c: HTTP/2 without TLS).

It answers every method of every service (no generated code: requests and
replies are raw bytes) with JSON naming itself, the method called and the
metadata it received, so a test can tell which backend a call reached and what
the gateway changed on the way. The method `Fail` answers with the gRPC status
named by the request body (e.g. b"NOT_FOUND").

It also serves grpc.health.v1.Health/Check for the services "" and "echo" (others:
NOT_FOUND), SERVING until `/agc.test.Health/Set` is called with b"NOT_SERVING"
(and again with b"SERVING").
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable
from typing import Any

import grpc

# HealthCheckResponse.status (field 1, a varint) as protobuf bytes
_HEALTH = {"SERVING": b"\x08\x01", "NOT_SERVING": b"\x08\x02"}
_HEALTH_SERVICES = (b"", b"echo")


class _Echo(grpc.GenericRpcHandler):
    def __init__(self, name: str) -> None:
        self.name = name
        self.health = "SERVING"

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method  # "/package.Service/Method"

        async def call(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            if method == "/grpc.health.v1.Health/Check":
                # HealthCheckRequest: field 1 (service), a length-prefixed string, or nothing
                service = request[2:] if request[:1] == b"\x0a" else b""
                if service not in _HEALTH_SERVICES:
                    await context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
                return _HEALTH[self.health]
            if method == "/agc.test.Health/Set":
                self.health = request.decode()
                return b""
            if method.endswith("/Fail"):
                await context.abort(grpc.StatusCode[request.decode()], "asked to fail")
            metadata = {key: value for key, value in context.invocation_metadata() or ()}
            reply = {"name": self.name, "method": method, "metadata": metadata}
            return json.dumps(reply).encode()

        handler: Callable[..., Any] = call
        return grpc.unary_unary_rpc_method_handler(handler)


async def serve(address: str, port: int, name: str) -> None:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((_Echo(name),))
    server.add_insecure_port(f"{address}:{port}")
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--name", required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.address, args.port, args.name))


if __name__ == "__main__":
    main()
