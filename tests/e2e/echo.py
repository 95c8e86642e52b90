"""An echo backend for e2e tests: answers with what it received, as JSON.

Like the Gateway API conformance echo server it reports the path, method,
host and headers it saw plus its own name, so a test can tell which backend
served a request and what the gateway changed on the way. `?delay=<seconds>`
delays the answer; `?status=<code>` picks the status. WebSocket upgrades on
/ws echo messages back. GET /__seen lists the paths received so far.
"""

from __future__ import annotations

import argparse
import asyncio

from aiohttp import WSMsgType, web


def make_app(name: str) -> web.Application:
    # paths received, for tests that check a copy arrived (mirrors); read at /__seen
    seen: list[str] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.path == "/__seen":
            return web.json_response(seen)
        seen.append(request.path_qs)
        if request.path == "/ws" and request.headers.get("Upgrade", "").lower() == "websocket":
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await ws.send_str(f"{name}:{msg.data}")
            return ws
        delay = float(request.query.get("delay", "0"))
        if delay:
            await asyncio.sleep(delay)
        body = await request.read()
        return web.json_response(
            {
                "name": name,
                "path": request.path_qs,
                "method": request.method,
                "host": request.headers.get("Host", ""),
                "headers": {k: v for k, v in request.headers.items()},
                "body_length": len(body),
                "remote": request.remote,
            },
            status=int(request.query.get("status", "200")),
            headers={"X-Backend": name},
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--name", required=True)
    args = parser.parse_args()
    web.run_app(make_app(args.name), host=args.address, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
