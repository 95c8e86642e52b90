"""The probe and metrics endpoint: `/healthz`, `/readyz`, `/metrics` on one port.

- `/healthz` answers 200 whenever the event loop runs handlers: a loop that is
  blocked or dead cannot answer, and the kubelet restarts the pod. It checks
  nothing else on purpose; a liveness probe that fails on a slow apiserver
  would restart a healthy controller.
- `/readyz` answers 200 when `not_ready_reasons()` is empty and 503 with the
  reasons (one per line) otherwise; the rules are the controller's
  (`Controller.not_ready_reasons`).
- `/metrics` is the Prometheus text format of one registry, after
  `before_scrape()` (if given) refreshed what it collects from elsewhere: the
  local data plane's counters, read from NGINX's control socket.

The probes only read in-memory state: no I/O, so a probe is never slower than
the loop itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = structlog.get_logger(__name__)


def parse_address(address: str) -> tuple[str, int]:
    """`host:port` (or `:port`, all interfaces) → (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected HOST:PORT or :PORT, got {address!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


@asynccontextmanager
async def serving_health(
    address: tuple[str, int] | None,
    *,
    not_ready_reasons: Callable[[], list[str]],
    registry: CollectorRegistry,
    before_scrape: Callable[[], Awaitable[None]] | None = None,
) -> AsyncIterator[HealthServer | None]:
    """The endpoint on `address` for the duration of the block; None: no endpoint."""
    if address is None:
        yield None
        return
    server = HealthServer(
        not_ready_reasons=not_ready_reasons,
        registry=registry,
        host=address[0],
        port=address[1],
        before_scrape=before_scrape,
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


class HealthServer:
    def __init__(
        self,
        *,
        not_ready_reasons: Callable[[], list[str]],
        registry: CollectorRegistry,
        host: str,
        port: int,
        before_scrape: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._not_ready_reasons = not_ready_reasons
        self._registry = registry
        self._before_scrape = before_scrape
        self._host = host
        self._requested_port = port  # 0: any free port (tests)
        self._runner: web.AppRunner | None = None
        # the bound port once started
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        # probes arrive every few seconds: an access log line each would drown the rest
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._requested_port)
        await site.start()
        self._runner = runner
        self.port = runner.addresses[0][1]
        log.info("health_server_started", host=self._host, port=self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, _request: web.Request) -> web.Response:
        reasons = self._not_ready_reasons()
        if reasons:
            return web.Response(status=503, text="".join(f"{r}\n" for r in reasons))
        return web.Response(text="ok\n")

    async def _metrics(self, _request: web.Request) -> web.Response:
        if self._before_scrape is not None:
            await self._before_scrape()
        return web.Response(
            body=generate_latest(self._registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )
