"""Wire informers, cache, mapper, work queue, workers and leader election into one controller.

Lifecycle: informers list and watch from the start on every replica (a standby
keeps its caches warm); once synced, the replica campaigns; the leader enqueues
every GatewayClass and Gateway and runs workers until it loses the lease or is
stopped. Stopping is orderly and bounded by `shutdown_grace`: no new keys,
in-flight reconciles finish (their status is written) for all but the last
RELEASE_RESERVE seconds of the grace period, then whatever still runs is
cancelled (its key is lost with this replica's queue; the next leader's first
pass redoes it), the lease is released, informers stop. A stop before the
informers synced (e.g. RBAC denies a list) skips straight to the end.

Readiness (`not_ready_reasons`, served at /readyz): every informer synced, no
list/watch currently refused by RBAC, and, while leading, the first pass of
this leadership term done: every key enqueued when it began has been through
one reconcile, whatever the outcome. A key that keeps failing is retried
through the queue and visible in logs and metrics; letting it gate readiness
would let one bad object keep the controller from ever becoming ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Mapping, Sequence

import aiohttp
import attrs
import structlog
from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException

from agc_controller.controller.cache import Cache
from agc_controller.controller.jwks import JwksFetcher
from agc_controller.controller.mapper import (
    Mapper,
    class_key,
    data_plane_key,
    gateway_key,
    ingress_class_key,
)
from agc_controller.controller.worker import Reconciler, run_worker
from agc_controller.core import resources as r
from agc_controller.core.clock import Clock, SystemClock
from agc_controller.core.keys import ObjectKey, object_key
from agc_controller.core.resources import Resource
from agc_controller.informers import ApiListWatcher, Informer, transform_for
from agc_controller.kube.client import has_field, served_resources, served_spec_fields
from agc_controller.providers.base import Provider
from agc_controller.queue import WorkQueue
from agc_controller.runtime.events import EventRecorder
from agc_controller.runtime.leader import LeaderElector
from agc_controller.runtime.metrics import ControllerMetrics, ReconcileOutcome
from agc_controller.runtime.permissions import PermissionProblems, PermissionReportingListWatcher
from agc_controller.settings import Settings
from agc_controller.status import StatusWriter
from agc_controller.translate import TranslateSettings
from agc_controller.translate.settings import FIELD_FEATURES, RESOURCE_FEATURES

log = structlog.get_logger(__name__)

# seconds between a standby's attempts to take a free lease (and the leader's
# renewals): with client-go's 1.2 jitter a standby notices a released lease
# within 0.5 * 2.2 = 1.1 s, which is what makes a SIGTERM handover take under
# 2 s. The price is two small Lease writes a second from the leader.
LEADER_RETRY_PERIOD = 0.5
# seconds from stop to exit; below Kubernetes' default 30 s termination grace
SHUTDOWN_GRACE = 25.0
# seconds of the grace kept for releasing the lease after in-flight work
RELEASE_RESERVE = 3.0

WATCHED = (
    r.GATEWAY_CLASS,
    r.GATEWAY,
    r.HTTP_ROUTE,
    r.GRPC_ROUTE,
    r.TLS_ROUTE,
    r.TCP_ROUTE,
    r.UDP_ROUTE,
    r.LISTENER_SET,
    r.BACKEND_TLS_POLICY,
    r.RATE_LIMIT_POLICY,
    r.HEALTH_CHECK_POLICY,
    r.LOAD_BALANCING_POLICY,
    r.AUTH_POLICY,
    r.WAF_POLICY,
    r.HTTP_ROUTE_FILTER,
    r.REFERENCE_GRANT,
    r.SERVICE,
    r.ENDPOINT_SLICE,
    r.SECRET,
    r.CONFIG_MAP,
    r.NAMESPACE,
    r.INGRESS_CLASS,
    r.INGRESS,
)


# middle-generation collections between two full ones once the heap is set aside
# (CPython's default is 10)
FULL_PASS_EVERY = 100


@attrs.define
class LongLivedHeap:
    """Keeps the long-lived heap out of the cyclic collector's full passes.

    The caches and every Gateway's memo are the bulk of the heap and live as long
    as the process; a full collection that scans them holds the event loop for
    hundreds of ms at 5,000 routes. They are set aside (gc.freeze) once the first
    pass is done, and again each time the cache has grown by a quarter since, so
    a cluster that grows after start-up is covered too. Each time after one
    deliberate collection, so that no garbage cycle is frozen with them.
    """

    # cached objects when the heap was last set aside; None: never
    set_aside_at: int | None = None

    def set_aside(self, cached: int) -> None:
        gc.collect()
        gc.freeze()
        # CPython starts a full pass when the unfrozen old objects have grown by a
        # quarter, counting only those: with the bulk frozen that is soon and often,
        # and each pass scans everything allocated since the freeze (17-400 ms at
        # 3,000-5,000 routes). The growth of the whole cache already sets the heap
        # aside again (one deliberate pass); in between, full passes come a tenth
        # as often.
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, FULL_PASS_EVERY)
        self.set_aside_at = cached

    def set_aside_if_grown(self, cached: int) -> bool:
        if self.set_aside_at is None or cached <= self.set_aside_at * 1.25 + 100:
            return False
        self.set_aside(cached)
        return True


def unserved_resource_features(
    features: frozenset[str], served: Mapping[str, set[str]]
) -> set[str]:
    """The `features` whose resource is not among `served` (group/version -> plurals)."""
    return {
        feature
        for (group_version, plural), needing in RESOURCE_FEATURES.items()
        if plural not in served.get(group_version, set())
        for feature in needing & features
    }


class Controller:
    def __init__(
        self,
        api: client.ApiClient,
        *,
        settings: Settings,
        translate_settings: TranslateSettings,
        provider: Provider,
        clock: Clock | None = None,
        metrics: ControllerMetrics | None = None,
        leader_retry_period: float = LEADER_RETRY_PERIOD,
        shutdown_grace: float = SHUTDOWN_GRACE,
        record_events: bool = True,
    ) -> None:
        self._api = api
        self._settings = settings
        self._clock = clock or SystemClock()
        self.metrics = metrics or ControllerMetrics(
            provider=provider.name, lease_name=settings.lease_name
        )
        self.queue: WorkQueue[ObjectKey] = WorkQueue(clock=self._clock, metrics=self.metrics)
        self._translate_settings = translate_settings
        self._provider = provider
        self._shutdown_grace = shutdown_grace
        self._record_events = record_events
        # set once every informer has listed
        self.synced = asyncio.Event()
        # informers not synced yet, by plural; filled when they are built
        self._unsynced: set[str] = set()
        self.permissions = PermissionProblems()
        # keys of this leadership term's first pass not reconciled yet; None: not leading
        self._first_pass: set[ObjectKey] | None = None
        # the informers' stores, once built
        self._cache: Cache | None = None
        # group/version -> the plurals the server serves there, as found at start
        self._served: dict[str, set[str]] = {}
        self._heap = LongLivedHeap()
        self._elector = (
            LeaderElector(
                api,
                namespace=settings.lease_namespace,
                name=settings.lease_name,
                identity=settings.identity,
                clock=self._clock,
                retry_period=leader_retry_period,
            )
            if settings.leader_election
            else None
        )

    @property
    def is_leader(self) -> bool:
        return self._elector is None or self._elector.is_leader

    def not_ready_reasons(self) -> list[str]:
        """Why this replica is not ready; empty when it is."""
        reasons = []
        if not self.synced.is_set():
            waiting = ", ".join(sorted(self._unsynced)) or "informers not started"
            reasons.append(f"caches not synced: {waiting}")
        if self.permissions.denied:
            reasons.append(f"permission denied: {', '.join(sorted(self.permissions.denied))}")
        if self._first_pass:
            reasons.append(f"first pass as leader: {len(self._first_pass)} keys to go")
        return reasons

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set, then shut down in order."""
        watched = await self._build_informers()
        cache = self._cache = Cache.with_stores({res.kind: inf.store for res, inf in watched})
        mapper = Mapper(cache=cache, enqueue=self.queue.add)
        for resource, informer in watched:
            informer.add_handler(mapper.handler(resource.kind))
        jwks = JwksFetcher(
            cache.remote_jwks,
            wanted=mapper.jwks_urls,
            on_change=mapper.jwks_changed,
            refresh_s=self._settings.jwks_refresh_s,
            ca_file=self._settings.jwks_ca_file,
        )
        controller_name = self._translate_settings.controller_name
        settings = await self._features_served(self._translate_settings)
        events = (
            EventRecorder(
                self._api,
                reporting_controller=controller_name,
                reporting_instance=self._settings.identity,
                clock=self._clock,
            )
            if self._record_events
            else None
        )
        reconciler = Reconciler(
            cache=cache,
            settings=settings,
            provider=self._provider,
            writer=StatusWriter(self._api, controller_name=controller_name, clock=self._clock),
            clock=self._clock,
            metrics=self.metrics,
            events=events,
        )
        async with asyncio.TaskGroup() as tg:
            informer_tasks = [
                tg.create_task(inf.run(), name=f"informer-{res.plural}") for res, inf in watched
            ]
            lag = tg.create_task(self.metrics.watch_loop_lag(self._clock), name="loop-lag")
            fetcher = tg.create_task(jwks.run(), name="jwks")
            posting = tg.create_task(events.run(), name="events") if events else None
            election = leading = None
            if await self._synced_before(stop, watched):
                election = (
                    tg.create_task(self._elector.run(), name="leader-election")
                    if self._elector
                    else None
                )
                leading = tg.create_task(self._lead(cache, reconciler), name="lead")
                await stop.wait()
            log.info("controller_stopping")
            await self._stop_working(leading)
            if election is not None and self._elector is not None:
                election.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await election
                await self._release_lease()
            self.metrics.set_leader(False)
            for task in (*informer_tasks, lag, fetcher, *([posting] if posting else [])):
                task.cancel()
        log.info("controller_stopped")

    async def _synced_before(
        self, stop: asyncio.Event, watched: Sequence[tuple[Resource, Informer]]
    ) -> bool:
        """Wait for every informer to sync; False if `stop` came first."""

        async def synced(resource: Resource, informer: Informer) -> None:
            await informer.wait_synced()
            self._unsynced.discard(resource.plural)

        async def every_informer_synced() -> None:
            await asyncio.gather(*(synced(res, inf) for res, inf in watched))

        all_synced = asyncio.ensure_future(every_informer_synced())
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({all_synced, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            all_synced.cancel()
            stopped.cancel()
        if stop.is_set():
            return False
        self.synced.set()
        log.info("informers_synced", kinds=[res.kind for res, _ in watched])
        return True

    async def _stop_working(self, leading: asyncio.Task[None] | None) -> None:
        """Let in-flight reconciles finish within the grace period, then stop the workers."""
        drain_within = max(0.0, self._shutdown_grace - RELEASE_RESERVE)
        try:
            async with asyncio.timeout(drain_within):
                await self.queue.shutdown_with_drain()
        except TimeoutError:
            log.warning("shutdown_grace_exceeded", cancelling="in-flight reconciles")
        if leading is not None:
            leading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await leading

    async def _release_lease(self) -> None:
        assert self._elector is not None
        try:
            async with asyncio.timeout(RELEASE_RESERVE):
                await self._elector.release()
        except TimeoutError:
            # the lease then expires on its own; a standby waits lease_duration
            log.warning("leader_release_timed_out")

    async def _lead(self, cache: Cache, reconciler: Reconciler) -> None:
        while True:
            if self._elector is not None:
                await self._elector.wait_leading()
            self.metrics.set_leader(True)
            self._first_pass = self._enqueue_everything(cache)
            workers = [
                asyncio.create_task(
                    run_worker(
                        self.queue,
                        reconciler.reconcile,
                        clock=self._clock,
                        on_reconciled=self._reconciled,
                    ),
                    name=f"worker-{i}",
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
                self._first_pass = None
                self.metrics.set_leader(False)
                for worker in workers:
                    worker.cancel()
                await asyncio.gather(*workers, return_exceptions=True)

    def _reconciled(self, key: ObjectKey, outcome: ReconcileOutcome, seconds: float) -> None:
        self.metrics.observe_reconcile(kind=key.kind, outcome=outcome, seconds=seconds)
        if self._first_pass:
            self._first_pass.discard(key)
            if not self._first_pass:
                log.info("first_pass_done")
                self._heap.set_aside(self._cached_objects())
        elif self._first_pass is not None and self._heap.set_aside_if_grown(
            cached := self._cached_objects()
        ):
            log.info("heap_set_aside", cached_objects=cached)

    async def _features_served(self, settings: TranslateSettings) -> TranslateSettings:
        """`settings` without the features whose resources the server does not serve
        (no ListenerSet CRD) or whose fields the installed CRDs lack (the standard
        channel has no HTTPRoute retry): a GatewayClass claims only what a user can
        use. If a schema cannot be read, its fields' claim is left as it is."""
        missing = unserved_resource_features(settings.supported_features, self._served)
        if missing:
            log.info("feature_not_served", features=sorted(missing), reason="resource not served")
        for (kind, path), features in FIELD_FEATURES.items():
            if not features & settings.supported_features:
                continue
            try:
                spec = await served_spec_fields(self._api, f"{r.GATEWAY_GROUP}/v1", kind)
            except (ApiException, aiohttp.ClientError, TimeoutError) as e:
                log.warning("schema_unreadable", kind=kind, error=str(e))
                continue
            if spec is not None and not has_field(spec, path):
                log.info(
                    "feature_not_served",
                    kind=kind,
                    field=".".join(("spec", *path)),
                    features=sorted(features & settings.supported_features),
                )
                missing |= features
        if not missing:
            return settings
        return attrs.evolve(settings, supported_features=settings.supported_features - missing)

    def _cached_objects(self) -> int:
        return sum(len(store) for store in self._cache.stores.values()) if self._cache else 0

    def requeue_data_plane(self, gateway: ObjectKey) -> None:
        """Reconcile again the data plane of a provider's Gateway `gateway` (a
        provider's callback: a report arrived, an address was let go...)."""
        self.queue.add(data_plane_key(gateway))

    def _enqueue_everything(self, cache: Cache) -> set[ObjectKey]:
        keys = {
            class_key(gc["metadata"]["name"]) for gc in cache.store(r.GATEWAY_CLASS.kind).list()
        }
        for gateway in cache.store(r.GATEWAY.kind).list():
            keys.add(gateway_key(object_key(gateway)))
        for ingress_class in cache.store(r.INGRESS_CLASS.kind).list():
            keys.add(ingress_class_key(ingress_class["metadata"]["name"]))
        for key in keys:
            self.queue.add(key)
        return keys

    async def _build_informers(self) -> Sequence[tuple[Resource, Informer]]:
        served = self._served
        informers = []
        # with mesh mTLS on, the sidecar pods' service accounts (what endpoints must
        # prove); for probes from readinessProbes, every pod's probes. Not both: the
        # mesh runs on the local provider alone (factory.check_mesh), and takes a pod it
        # finds for one with a sidecar
        capabilities = self._translate_settings.capabilities
        pods = capabilities.mesh or capabilities.probes_from_readiness
        for resource in (*WATCHED, *([r.POD] if pods else [])):
            group_version = resource.api_version
            if group_version not in served:
                served[group_version] = await served_resources(self._api, group_version)
            if resource.plural not in served[group_version]:
                log.warning("resource_not_served", kind=resource.kind, api_version=group_version)
                continue
            selector = (
                r.MESH_POD_SELECTOR
                if resource == r.POD and not capabilities.probes_from_readiness
                else None
            )
            list_watcher = PermissionReportingListWatcher(
                ApiListWatcher(self._api, resource, label_selector=selector),
                resource,
                self.permissions,
            )
            informer = Informer(
                resource,
                list_watcher,
                clock=self._clock,
                transform=transform_for(resource),
            )
            informers.append((resource, informer))
            self._unsynced.add(resource.plural)
        return informers
