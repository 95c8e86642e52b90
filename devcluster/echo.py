"""An echo backend (examples, e2e tests): answers with what it received, as JSON.

Like the Gateway API conformance echo server it reports the path, method,
host and headers it saw plus its own name, so a test can tell which backend
served a request and what the gateway changed on the way.

- `?delay=<seconds>` delays the answer (`--delay` delays every answer);
  `?status=<code>` picks the status.
- `?key=<k>&fail_times=<n>` answers the first n requests with key k with
  `fail_status` (default 500), after `fail_delay` seconds if given, later ones
  normally, and reports the count as "attempt" (retry tests).
- `?close=1` closes the connection after the answer.
- Over TLS with client certificates, "client_cert" (the subject), "client_uris"
  (URI names: a SPIFFE identity) and "client_serial" describe the client's.
- WebSocket upgrades on /ws echo messages back.
- GET /__seen lists the paths received so far.
- GET /__health answers 200 (health-check tests), or the status a
  `PUT /__health?status=<code>` set; those requests are not listed in /__seen.
- UDP datagrams to the same address and port come back as `<name>:<datagram>`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import ssl
from typing import Any, cast

from aiohttp import WSMsgType, web


def make_app(name: str, *, status: int = 200, delay: float = 0.0) -> web.Application:
    # paths received, for tests that check a copy arrived (mirrors); read at /__seen
    seen: list[str] = []
    # requests per `key` query value
    attempts: collections.Counter[str] = collections.Counter()
    # what GET /__health answers (set by PUT /__health?status=<code>)
    health = [200]

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.path == "/__seen":
            return web.json_response(seen)
        if request.path == "/__health":
            if request.method == "PUT":
                health[0] = int(request.query["status"])
            return web.json_response({"name": name, "health": health[0]}, status=health[0])
        seen.append(request.path_qs)
        if request.path == "/ws" and request.headers.get("Upgrade", "").lower() == "websocket":
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await ws.send_str(f"{name}:{msg.data}")
            return ws
        wait = float(request.query.get("delay", delay))
        if wait:
            await asyncio.sleep(wait)
        answer = int(request.query.get("status", status))
        attempt = None
        if (key := request.query.get("key")) is not None:
            attempts[key] += 1
            attempt = attempts[key]
            if attempt <= int(request.query.get("fail_times", "0")):
                answer = int(request.query.get("fail_status", "500"))
                await asyncio.sleep(float(request.query.get("fail_delay", "0")))
        body = await request.read()
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        response = web.json_response(
            {
                "name": name,
                "path": request.path_qs,
                "method": request.method,
                "host": request.headers.get("Host", ""),
                "headers": {k: v for k, v in request.headers.items()},
                "body_length": len(body),
                "remote": request.remote,
                "client_cert": dict(x[0] for x in peer["subject"]) if peer else None,
                # a workload certificate's identity (SPIFFE) is a URI name alone
                "client_uris": [v for k, v in peer.get("subjectAltName", ()) if k == "URI"]
                if peer
                else None,
                "client_serial": peer.get("serialNumber") if peer else None,
                "attempt": attempt,
            },
            status=answer,
            headers={"X-Backend": name},
        )
        if request.query.get("close"):
            # this connection ends with the answer: the next request opens a new one
            response.force_close()
        return response

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


class _UdpEcho(asyncio.DatagramProtocol):
    def __init__(self, name: str) -> None:
        self._prefix = f"{name}:".encode()
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a datagram endpoint's transport (a subclass asyncio does not export)
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if self._transport is not None:
            self._transport.sendto(self._prefix + data, addr)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--name", required=True)
    parser.add_argument("--status", type=int, default=200, help="answer every request with it")
    parser.add_argument(
        "--delay", type=float, default=0.0, help="seconds every answer waits (?delay= overrides)"
    )
    parser.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM file)")
    parser.add_argument("--tls-key")
    parser.add_argument("--client-ca", help="require client certificates signed by this CA")
    args = parser.parse_args()
    context = None
    if args.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        if args.client_ca:
            context.load_verify_locations(args.client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
    app = make_app(args.name, status=args.status, delay=args.delay)

    async def udp_echo(app: web.Application) -> None:
        await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: _UdpEcho(args.name), local_addr=(args.address, args.port)
        )

    app.on_startup.append(udp_echo)
    web.run_app(
        app,
        host=args.address,
        port=args.port,
        ssl_context=context,
        print=None,
        access_log=None,
    )


if __name__ == "__main__":
    main()
