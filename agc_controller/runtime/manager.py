"""Wire informers, cache, mapper, work queue, workers and leader election into one controller.

Lifecycle: informers list and watch from the start on every replica (a standby
keeps its caches warm); once synced, the replica campaigns; the leader enqueues
every GatewayClass and Gateway and runs workers until it loses the lease or is
stopped. Stopping is orderly: no new keys, in-flight reconciles finish (their
status is written), the lease is released, informers stop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import structlog
from kubernetes_asyncio import client

from agc_controller.clock import Clock, SystemClock
from agc_controller.controller.cache import Cache
from agc_controller.controller.mapper import Mapper, class_key, gateway_key
from agc_controller.controller.worker import Reconciler, run_worker
from agc_controller.informers import ApiListWatcher, Informer, transform_for
from agc_controller.kube import resources as r
from agc_controller.kube.client import served_resources
from agc_controller.kube.resources import Resource
from agc_controller.providers.base import Provider
from agc_controller.queue import WorkQueue
from agc_controller.runtime.leader import LeaderElector
from agc_controller.settings import Settings
from agc_controller.status import StatusWriter
from agc_controller.status.model import ObjectKey
from agc_controller.translate import TranslateSettings

log = structlog.get_logger(__name__)

WATCHED = (
    r.GATEWAY_CLASS,
    r.GATEWAY,
    r.HTTP_ROUTE,
    r.GRPC_ROUTE,
    r.BACKEND_TLS_POLICY,
    r.REFERENCE_GRANT,
    r.SERVICE,
    r.ENDPOINT_SLICE,
    r.SECRET,
    r.CONFIG_MAP,
    r.NAMESPACE,
)


class Controller:
    def __init__(
        self,
        api: client.ApiClient,
        *,
        settings: Settings,
        translate_settings: TranslateSettings,
        provider: Provider,
        clock: Clock | None = None,
    ) -> None:
        self._api = api
        self._settings = settings
        self._clock = clock or SystemClock()
        self.queue: WorkQueue[ObjectKey] = WorkQueue(clock=self._clock)
        self._translate_settings = translate_settings
        self._provider = provider
        # set once every informer has listed
        self.synced = asyncio.Event()
        self._elector = (
            LeaderElector(
                api,
                namespace=settings.lease_namespace,
                name=settings.lease_name,
                identity=settings.identity,
                clock=self._clock,
            )
            if settings.leader_election
            else None
        )

    @property
    def is_leader(self) -> bool:
        return self._elector is None or self._elector.is_leader

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set, then shut down in order."""
        watched = await self._build_informers()
        informers = [inf for _, inf in watched]
        cache = Cache.with_stores({res.kind: inf.store for res, inf in watched})
        mapper = Mapper(cache=cache, enqueue=self.queue.add)
        for resource, informer in watched:
            informer.add_handler(mapper.handler(resource.kind))
        reconciler = Reconciler(
            cache=cache,
            settings=self._translate_settings,
            provider=self._provider,
            writer=StatusWriter(
                self._api,
                controller_name=self._translate_settings.controller_name,
                clock=self._clock,
            ),
        )
        async with asyncio.TaskGroup() as tg:
            informer_tasks = [
                tg.create_task(inf.run(), name=f"informer-{res.plural}") for res, inf in watched
            ]
            await asyncio.gather(*(inf.wait_synced() for inf in informers))
            self.synced.set()
            log.info("informers_synced", kinds=[res.kind for res, _ in watched])
            election = (
                tg.create_task(self._elector.run(), name="leader-election")
                if self._elector
                else None
            )
            leading = tg.create_task(self._lead(cache, reconciler), name="lead")
            await stop.wait()
            log.info("controller_stopping")
            await self.queue.shutdown_with_drain()
            leading.cancel()
            if election is not None and self._elector is not None:
                election.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await election
                await self._elector.release()
            for task in informer_tasks:
                task.cancel()
        log.info("controller_stopped")

    async def _lead(self, cache: Cache, reconciler: Reconciler) -> None:
        while True:
            if self._elector is not None:
                await self._elector.wait_leading()
            self._enqueue_everything(cache)
            workers = [
                asyncio.create_task(
                    run_worker(self.queue, reconciler.reconcile), name=f"worker-{i}"
                )
                for i in range(self._settings.workers)
            ]
            try:
                if self._elector is None:
                    await asyncio.gather(*workers)
                    return
                await self._elector.wait_not_leading()
                log.warning("leadership_lost_stopping_workers")
            finally:
                for worker in workers:
                    worker.cancel()
                await asyncio.gather(*workers, return_exceptions=True)

    def _enqueue_everything(self, cache: Cache) -> None:
        for gateway_class in cache.store(r.GATEWAY_CLASS.kind).list():
            self.queue.add(class_key(gateway_class["metadata"]["name"]))
        for gateway in cache.store(r.GATEWAY.kind).list():
            meta = gateway["metadata"]
            self.queue.add(gateway_key(f"{meta['namespace']}/{meta['name']}"))

    async def _build_informers(self) -> Sequence[tuple[Resource, Informer]]:
        served: dict[str, set[str]] = {}
        informers = []
        for resource in WATCHED:
            group_version = resource.api_version
            if group_version not in served:
                served[group_version] = await served_resources(self._api, group_version)
            if resource.plural not in served[group_version]:
                log.warning("resource_not_served", kind=resource.kind, api_version=group_version)
                continue
            informer = Informer(
                resource,
                ApiListWatcher(self._api, resource),
                clock=self._clock,
                transform=transform_for(resource),
            )
            informers.append((resource, informer))
        return informers
