"""Leader election on a coordination.k8s.io/v1 Lease (client-go's
`leaderelection` with a LeaseLock), so that of several replicas only one
reconciles.

Invariants:
- Expiry is judged on OUR monotonic clock: another holder's lease counts as
  expired only once its spec has not changed, as we observed it, for its
  `leaseDurationSeconds`. `renewTime` is written for people and tools and never
  compared across machines, whose wall clocks may disagree.
- Every write is optimistic: a PUT carries the resourceVersion we last read, and
  a 409 means someone else wrote first, so we read again and re-decide.
- A leader that has not renewed for `renew_deadline` (counted from the start of
  its last successful renewal) steps down. Because `lease_duration` is longer,
  it stops acting before any standby may take over, assuming the replicas'
  clocks tick at similar rates.
- `run()` never writes on the way out: cancelling it is, as far as the Lease is
  concerned, a crash, and a standby takes over once the lease expires. For an
  orderly shutdown cancel `run()` and then `await release()`, which writes an
  empty holder with `leaseDurationSeconds: 1` (client-go's ReleaseOnCancel) so a
  standby takes over at its next retry.

Timing (LEASE_DURATION, RENEW_DEADLINE): a standby may take over only once the
lease it observed has not changed for `lease_duration` on its own clock, so a
crashed leader's lease is taken `lease_duration` after the standby saw its last
renewal, plus at most one jittered retry (2.2 x retry_period). With the
controller's retry period of 0.5 s that is 10 + 0.5 (renewal interval) + 1.1
= at most ~11.6 s, well inside a 15 s takeover budget, with room for
a slow apiserver round trip. The renew deadline stays 3 s (= 6 renewal
attempts) below the lease duration: a leader cut off from the apiserver stops
acting 3 s before any standby may start, which absorbs clock-rate differences
and the duration of the request that ran out. Kubernetes' own components use
15/10/2 s for a larger fleet of candidates; a shorter lease costs nothing here
but the two Lease writes a second a 0.5 s retry period already makes.

Use:

    elector = LeaderElector(api, namespace=ns, name="agc-controller", identity=pod, clock=clock)
    task = tg.create_task(elector.run(), name="leader-election")
    while True:
        await elector.wait_leading()
        ...start reconciling...
        await elector.wait_not_leading()
        ...stop reconciling; run() is campaigning again...
"""

from __future__ import annotations

import asyncio
import math
import random
from typing import Any

import aiohttp
import structlog
from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException

from agc_controller.core.clock import Clock
from agc_controller.core.resources import LEASE
from agc_controller.core.timefmt import micro_time

log = structlog.get_logger("agc_controller.runtime.leader")

# client-go's JitterFactor: campaign retries wait retry_period * [1, 2.2) so that
# standbys do not hit the apiserver in lockstep
_JITTER = 1.2
# seconds: see "Timing" above
LEASE_DURATION = 10.0
RENEW_DEADLINE = 7.0
# what a failed request to the apiserver raises; anything else is a bug and escapes
_API_ERRORS = (ApiException, aiohttp.ClientError)

Lease = dict[str, Any]


def _spec(lease: Lease | None) -> dict[str, Any]:
    spec: dict[str, Any] = (lease or {}).get("spec") or {}
    return spec


def _holder(lease: Lease | None) -> str:
    holder: str = _spec(lease).get("holderIdentity") or ""
    return holder


def _describe(error: BaseException) -> str:
    if isinstance(error, ApiException):
        return f"{error.status} {error.reason}"
    return str(error) or type(error).__name__


class LeaderElector:
    def __init__(
        self,
        api: client.ApiClient,
        *,
        namespace: str,
        name: str,
        identity: str,
        clock: Clock,
        lease_duration: float = LEASE_DURATION,
        renew_deadline: float = RENEW_DEADLINE,
        retry_period: float = 2.0,
    ) -> None:
        if not identity:
            raise ValueError("identity must not be empty: an empty holder means a free lease")
        if not lease_duration > renew_deadline > _JITTER * retry_period > 0:
            raise ValueError(
                "need lease_duration > renew_deadline > 1.2 * retry_period > 0, got "
                f"{lease_duration=} {renew_deadline=} {retry_period=}"
            )
        self._api = api
        self._namespace = namespace
        self._name = name
        self._identity = identity
        self._clock = clock
        # whole seconds on the wire; rounding up keeps standbys waiting at least as
        # long as this replica's own deadline arithmetic assumes
        self._lease_duration_seconds = math.ceil(lease_duration)
        self._lease_duration = lease_duration
        self._renew_deadline = renew_deadline
        self._retry_period = retry_period
        self._log = log.bind(lease=f"{namespace}/{name}", identity=identity)
        # the Lease as last read or written; None until the first success
        self._observed: Lease | None = None
        # monotonic time `_observed`'s spec last changed as we saw it; expiry counts from here
        self._observed_at = 0.0
        # exactly one of the two is set: whether this replica may act as leader now
        self._leading = asyncio.Event()
        self._not_leading = asyncio.Event()
        self._not_leading.set()
        # True while run() is active; release() must not race a renewal
        self._running = False

    @property
    def is_leader(self) -> bool:
        return self._leading.is_set()

    async def wait_leading(self) -> None:
        """Return once this replica leads (at once if it already does)."""
        await self._leading.wait()

    async def wait_not_leading(self) -> None:
        """Return once this replica does not lead (at once if it does not)."""
        await self._not_leading.wait()

    async def run(self) -> None:
        """Eternal: campaign until we hold the lease, renew it every `retry_period`
        until we cannot, step down, and campaign again."""
        if self._running:
            raise RuntimeError("LeaderElector.run() is already running")
        self._running = True
        try:
            while True:
                renewed_at = await self._acquire()
                self._start_leading()
                reason = await self._renew_until_lost(renewed_at)
                self._stop_leading(reason)
        finally:
            self._running = False
            if self.is_leader:
                self._stop_leading("stopped")

    async def release(self) -> None:
        """Hand the lease over now, if we hold it. Call after `run()` has ended.

        Gives up after `lease_duration`, by which time the lease has expired anyway.
        """
        if self._running:
            raise RuntimeError("cancel LeaderElector.run() before release()")
        try:
            async with asyncio.timeout(self._lease_duration):
                await self._release()
        except (*_API_ERRORS, TimeoutError) as error:
            self._log.warning("leader_release_failed", error=_describe(error))

    async def _acquire(self) -> float:
        """Try until we hold the lease; return when the winning attempt started."""
        while True:
            started = self._clock.monotonic()
            if await self._attempt(within=self._renew_deadline):
                return started
            await self._clock.sleep(self._retry_period * (1.0 + random.random() * _JITTER))

    async def _renew_until_lost(self, renewed_at: float) -> str:
        """Renew every `retry_period`; return why leadership ended."""
        while True:
            deadline = renewed_at + self._renew_deadline
            # after a failure, wake no later than the deadline so we step down on time
            pause = min(self._retry_period, deadline - self._clock.monotonic())
            await self._clock.sleep(max(0.0, pause))
            started = self._clock.monotonic()
            if started >= deadline:
                return "renew_deadline_exceeded"
            if await self._attempt(within=deadline - started):
                renewed_at = started
            elif _holder(self._observed) != self._identity:
                return "lease_taken"

    async def _attempt(self, *, within: float) -> bool:
        # a hung request must not outlive the deadline; the I/O is real, so the
        # event loop's clock bounds it rather than the injected one
        try:
            async with asyncio.timeout(within):
                return await self._try_acquire_or_renew()
        except TimeoutError:
            self._log.warning("leader_election_error", error="request timed out")
            return False

    async def _try_acquire_or_renew(self) -> bool:
        """One round of client-go's tryAcquireOrRenew: True if we hold the lease now."""
        now = micro_time(self._clock.wall())
        cached = self._observed
        if cached and _holder(cached) == self._identity and self._observed_still_valid():
            # fast path for a leader: renew from the cached object without a read;
            # any failure (a 409 above all) falls through to a fresh read
            try:
                await self._write(self._renewed(cached, now=now))
            except _API_ERRORS:
                pass
            else:
                return True
        try:
            current = await self._read()
            if current is None:
                await self._write(self._new_lease(now=now))
                return True
            self._observe_read(current)
            holder = _holder(current)
            if holder and holder != self._identity and self._observed_still_valid():
                return False
            await self._write(self._renewed(current, now=now))
        except ApiException as error:
            if error.status != 409:
                self._log.warning("leader_election_error", error=_describe(error))
            # 409: another replica wrote between our read and our write; re-decide next round
            return False
        except aiohttp.ClientError as error:
            self._log.warning("leader_election_error", error=_describe(error))
            return False
        return True

    async def _release(self) -> None:
        current = await self._read()
        while current is not None and _holder(current) == self._identity:
            now = micro_time(self._clock.wall())
            released = {
                **current,
                "spec": {
                    "holderIdentity": "",
                    "leaseDurationSeconds": 1,
                    "acquireTime": now,
                    "renewTime": now,
                    "leaseTransitions": _spec(current).get("leaseTransitions", 0),
                },
            }
            try:
                await self._write(released)
            except ApiException as error:
                if error.status != 409:
                    raise
                current = await self._read()
            else:
                self._log.info("leader_released")
                return

    def _renewed(self, current: Lease, *, now: str) -> Lease:
        """`current` with us as holder: keep acquireTime and the transition count
        if we held it already, else start a new term."""
        old = _spec(current)
        ours = _holder(current) == self._identity
        return {
            **current,
            "spec": {
                "holderIdentity": self._identity,
                "leaseDurationSeconds": self._lease_duration_seconds,
                "acquireTime": old.get("acquireTime", now) if ours else now,
                "renewTime": now,
                "leaseTransitions": old.get("leaseTransitions", 0) + (0 if ours else 1),
            },
        }

    def _new_lease(self, *, now: str) -> Lease:
        return {
            "apiVersion": LEASE.api_version,
            "kind": LEASE.kind,
            "metadata": {"name": self._name, "namespace": self._namespace},
            "spec": {
                "holderIdentity": self._identity,
                "leaseDurationSeconds": self._lease_duration_seconds,
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": 0,
            },
        }

    def _observed_still_valid(self) -> bool:
        duration = _spec(self._observed).get("leaseDurationSeconds") or 0
        return self._observed_at + duration > self._clock.monotonic()

    def _observe_read(self, lease: Lease) -> None:
        # only a change restarts the expiry clock: a lease nobody renews must expire
        if _spec(lease) != _spec(self._observed):
            self._observed_at = self._clock.monotonic()
        self._observed = lease

    async def _read(self) -> Lease | None:
        try:
            return await self._call("GET", LEASE.object_path(self._name, self._namespace))
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    async def _write(self, lease: Lease) -> None:
        """Create (no resourceVersion) or replace (optimistically) the Lease and
        observe the stored result."""
        if "resourceVersion" in lease["metadata"]:
            path = LEASE.object_path(self._name, self._namespace)
            stored = await self._call("PUT", path, body=lease)
        else:
            stored = await self._call("POST", LEASE.collection_path(self._namespace), body=lease)
        self._observed = stored
        self._observed_at = self._clock.monotonic()

    async def _call(self, method: str, path: str, *, body: Lease | None = None) -> Lease:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        result = await self._api.call_api(
            path,
            method,
            header_params=headers,
            body=body,
            response_types_map={200: "object", 201: "object"},
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
        )
        lease: Lease = result
        return lease

    def _start_leading(self) -> None:
        self._not_leading.clear()
        self._leading.set()
        self._log.info(
            "leader_acquired", lease_transitions=_spec(self._observed).get("leaseTransitions")
        )

    def _stop_leading(self, reason: str) -> None:
        self._leading.clear()
        self._not_leading.set()
        # an orderly stop is routine; losing the lease while running is not
        if reason == "stopped":
            self._log.info("leader_lost", reason=reason)
        else:
            self._log.warning("leader_lost", reason=reason)
