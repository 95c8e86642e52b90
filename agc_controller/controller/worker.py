"""One reconcile of one key, and the worker loop around it.

A reconcile is level-triggered: it rebuilds the whole desired state of its
Gateway from the cache, applies it, and writes every status that changed. It
never replays deltas, so running it twice is harmless. Failures go back to the
queue rate-limited (never dropped); a key that keeps failing (a poisoned
object) backs off alone while the other workers go on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import attrs
import structlog

from agc_controller.controller.cache import Cache
from agc_controller.kube import resources as r
from agc_controller.providers.base import ApplyResult, Provider
from agc_controller.queue import ShutDown, WorkQueue
from agc_controller.status import StatusWriteError, StatusWriter
from agc_controller.status.model import (
    DesiredStatus,
    GatewayClassStatus,
    GatewayStatus,
    ObjectKey,
)
from agc_controller.translate import TranslateSettings, translate_gateway, translate_gateway_class

log = structlog.get_logger(__name__)

# status writes in flight per reconcile: enough to write a thousand route statuses
# in about a second, few enough not to trip API priority and fairness
STATUS_CONCURRENCY = 16


@attrs.define
class Reconciler:
    cache: Cache
    settings: TranslateSettings
    provider: Provider
    writer: StatusWriter
    # called after each Gateway apply (metrics, events, readiness)
    on_applied: Callable[[ObjectKey, ApplyResult | None], None] = lambda _key, _result: None

    async def reconcile(self, key: ObjectKey) -> None:
        if key.kind == "GatewayClass":
            status = translate_gateway_class(
                self.cache.snapshot_for_class(key.name), key.name, self.settings
            )
            if status is not None:
                await self.writer.write(status, self.cache.get(r.GATEWAY_CLASS.kind, key.name))
            return
        translation = translate_gateway(
            self.cache.snapshot_for_gateway(key), f"{key.namespace}/{key.name}", self.settings
        )
        result: ApplyResult | None = None
        if translation.load_balancer is not None:
            result = await self.provider.apply(translation.load_balancer)
        else:
            await self.provider.delete(key)
        self.on_applied(key, result)
        statuses: list[DesiredStatus] = []
        gateway_status = translation.gateway_status(result)
        if gateway_status is not None:
            statuses.append(gateway_status)
        statuses.extend(translation.route_statuses)
        statuses.extend(translation.policy_statuses)
        await self._write_all(statuses)

    async def _write_all(self, statuses: list[DesiredStatus]) -> None:
        """Write every status; if any failed, raise the first failure after trying all."""
        gate = asyncio.Semaphore(STATUS_CONCURRENCY)

        async def write(status: DesiredStatus) -> None:
            async with gate:
                await self.writer.write(status, self._cached(status))

        results = await asyncio.gather(*(write(s) for s in statuses), return_exceptions=True)
        for outcome in results:
            if isinstance(outcome, BaseException):
                raise outcome

    def _cached(self, status: DesiredStatus) -> dict[str, object] | None:
        """The cached object the status belongs to (the writer reads it instead of a GET)."""
        if isinstance(status, GatewayClassStatus):
            return self.cache.get(r.GATEWAY_CLASS.kind, status.name)
        kind = r.GATEWAY.kind if isinstance(status, GatewayStatus) else status.kind
        return self.cache.get(kind, f"{status.namespace}/{status.name}")


async def run_worker(
    queue: WorkQueue[ObjectKey], reconcile: Callable[[ObjectKey], Awaitable[None]]
) -> None:
    """Take keys until the queue shuts down; never two workers on one key (the queue's rule)."""
    while True:
        try:
            key = await queue.get()
        except ShutDown:
            return
        attempt = queue.num_requeues(key)
        with structlog.contextvars.bound_contextvars(kind=key.kind, key=str(key), attempt=attempt):
            try:
                await reconcile(key)
            except asyncio.CancelledError:
                queue.add(key)
                queue.done(key)
                raise
            except StatusWriteError as e:
                log.info("reconcile_requeued", reason=str(e))
                _requeue(queue, key, e.delay)
            except Exception:
                log.exception("reconcile_failed")
                _requeue(queue, key, None)
            else:
                queue.forget(key)
        queue.done(key)


def _requeue(queue: WorkQueue[ObjectKey], key: ObjectKey, delay: float | None) -> None:
    if delay is not None:
        queue.add_after(key, delay)
    else:
        queue.add_rate_limited(key)
