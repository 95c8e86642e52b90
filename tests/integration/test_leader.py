"""Leader election against the real kube-apiserver: one leader at a time,
hand-over on release, take-over after a crash only once the lease expired,
step-down when renewals fail, and loss when another writer takes the lease."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from kubernetes_asyncio import client

from agc_controller.core.clock import SystemClock
from agc_controller.kube import api_client_from_kubeconfig
from agc_controller.runtime import LeaderElector
from devcluster import ControlPlane

LEASE_NAME = "agc-controller"
# short timings (client-go's defaults are 15 / 10 / 2 s)
FAST = {"lease_duration": 3.0, "renew_deadline": 2.0, "retry_period": 0.5}
# a lease that cannot expire during a test: any hand-over must come from release()
LONG = {"lease_duration": 60.0, "renew_deadline": 40.0, "retry_period": 0.5}
# generous bound on things that must happen; hitting it is a failure, not slowness
EVENTUALLY = 20.0
MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def elector(api: client.ApiClient, namespace: str, identity: str, **timing: float) -> LeaderElector:
    return LeaderElector(
        api,
        namespace=namespace,
        name=LEASE_NAME,
        identity=identity,
        clock=SystemClock(),
        **timing,
    )


@asynccontextmanager
async def running(
    *electors: LeaderElector,
) -> AsyncIterator[dict[LeaderElector, asyncio.Task[None]]]:
    tasks = {e: asyncio.create_task(e.run()) for e in electors}
    try:
        yield tasks
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)


async def first_leader(*electors: LeaderElector) -> LeaderElector:
    waits = {asyncio.create_task(e.wait_leading()): e for e in electors}
    done, pending = await asyncio.wait(
        waits, timeout=EVENTUALLY, return_when=asyncio.FIRST_COMPLETED
    )
    for task in pending:
        task.cancel()
    assert done, "nobody became leader"
    return waits[done.pop()]


async def crash(tasks: dict[LeaderElector, asyncio.Task[None]], victim: LeaderElector) -> None:
    """Cancel `victim`'s run() and write nothing: to the Lease it just vanished."""
    tasks[victim].cancel()
    await asyncio.gather(tasks[victim], return_exceptions=True)


async def read_lease(kube: client.ApiClient, namespace: str) -> dict[str, Any]:
    lease: dict[str, Any] = await client.CustomObjectsApi(kube).get_namespaced_custom_object(
        "coordination.k8s.io", "v1", namespace, "leases", LEASE_NAME
    )
    return lease


async def test_exactly_one_of_two_leads_and_keeps_renewing(
    kube: client.ApiClient, namespace: str
) -> None:
    a = elector(kube, namespace, "replica-a", **FAST)
    b = elector(kube, namespace, "replica-b", **FAST)
    async with running(a, b):
        leader = await first_leader(a, b)
        first = (await read_lease(kube, namespace))["spec"]
        # longer than the lease duration: a standby that ignored renewals would take over
        for _ in range(10):
            await asyncio.sleep(0.5)
            assert [a.is_leader, b.is_leader].count(True) == 1
            assert leader.is_leader
        later = (await read_lease(kube, namespace))["spec"]

    identity = "replica-a" if leader is a else "replica-b"
    assert first["holderIdentity"] == later["holderIdentity"] == identity
    assert first["leaseDurationSeconds"] == 3
    assert first["leaseTransitions"] == later["leaseTransitions"] == 0
    assert later["acquireTime"] == first["acquireTime"]
    assert later["renewTime"] > first["renewTime"]
    assert all(MICRO_TIME.match(t) for t in (first["acquireTime"], later["renewTime"]))


async def test_release_hands_over_to_the_standby_at_once(
    kube: client.ApiClient, namespace: str
) -> None:
    a = elector(kube, namespace, "replica-a", **LONG)
    b = elector(kube, namespace, "replica-b", **LONG)
    async with running(a, b) as tasks:
        leader = await first_leader(a, b)
        standby = b if leader is a else a
        await crash(tasks, leader)
        assert not leader.is_leader
        await leader.release()
        # the 60 s lease cannot have expired: only the release explains a take-over
        await asyncio.wait_for(standby.wait_leading(), EVENTUALLY)

        spec = (await read_lease(kube, namespace))["spec"]
        assert spec["holderIdentity"] == ("replica-b" if standby is b else "replica-a")
        assert spec["leaseTransitions"] == 1
        assert spec["leaseDurationSeconds"] == 60

        await leader.release()  # no longer the holder: must not touch the lease
        assert (await read_lease(kube, namespace))["spec"]["holderIdentity"] == spec[
            "holderIdentity"
        ]


async def test_crashed_leader_is_replaced_only_after_lease_expiry(
    kube: client.ApiClient, namespace: str
) -> None:
    a = elector(kube, namespace, "replica-a", **FAST)
    b = elector(kube, namespace, "replica-b", **FAST)
    async with running(a, b) as tasks:
        leader = await first_leader(a, b)
        standby = b if leader is a else a
        loop = asyncio.get_running_loop()
        crashed_at = loop.time()
        await crash(tasks, leader)
        await asyncio.wait_for(standby.wait_leading(), EVENTUALLY)
        waited = loop.time() - crashed_at

    # The last renewal started at most one retry period (plus a request) before
    # the crash, and the standby waits a full lease duration after seeing it.
    assert waited >= FAST["lease_duration"] - FAST["retry_period"] - 0.5
    spec = (await read_lease(kube, namespace))["spec"]
    assert spec["holderIdentity"] == ("replica-b" if standby is b else "replica-a")
    assert spec["leaseTransitions"] == 1


async def test_leader_that_cannot_renew_steps_down_before_the_standby_takes_over(
    kube: client.ApiClient, namespace: str, control_plane: ControlPlane
) -> None:
    async with await api_client_from_kubeconfig(control_plane.kubeconfig) as isolated:
        a = elector(isolated, namespace, "replica-a", **FAST)
        async with running(a):
            await asyncio.wait_for(a.wait_leading(), EVENTUALLY)
            b = elector(kube, namespace, "replica-b", **FAST)
            async with running(b):
                loop = asyncio.get_running_loop()
                stepped_down_at: list[float] = []
                took_over_at: list[float] = []

                async def note(wait: Any, into: list[float]) -> None:
                    await wait
                    into.append(loop.time())

                # cut replica-a off from the apiserver: every renewal now fails
                isolated.configuration.host = "https://127.0.0.1:1"
                await asyncio.wait_for(
                    asyncio.gather(
                        note(a.wait_not_leading(), stepped_down_at),
                        note(b.wait_leading(), took_over_at),
                    ),
                    EVENTUALLY,
                )
                assert stepped_down_at[0] < took_over_at[0], "two leaders at once"
                assert not a.is_leader
    spec = (await read_lease(kube, namespace))["spec"]
    assert spec["holderIdentity"] == "replica-b"
    assert spec["leaseTransitions"] == 1


async def test_leader_steps_down_when_another_writer_takes_the_lease(
    kube: client.ApiClient, namespace: str
) -> None:
    a = elector(kube, namespace, "replica-a", **LONG)
    async with running(a):
        await asyncio.wait_for(a.wait_leading(), EVENTUALLY)
        lease = await read_lease(kube, namespace)
        lease["spec"]["holderIdentity"] = "intruder"
        await client.CustomObjectsApi(kube).replace_namespaced_custom_object(
            "coordination.k8s.io", "v1", namespace, "leases", LEASE_NAME, lease
        )
        # well before the 40 s renew deadline: the next renewal sees the new holder
        await asyncio.wait_for(a.wait_not_leading(), EVENTUALLY)
        for _ in range(4):
            await asyncio.sleep(0.5)
            assert not a.is_leader, "the intruder's lease is still valid"
    assert (await read_lease(kube, namespace))["spec"]["holderIdentity"] == "intruder"


async def test_release_writes_an_empty_holder_that_expires_at_once(
    kube: client.ApiClient, namespace: str
) -> None:
    a = elector(kube, namespace, "replica-a", **LONG)
    async with running(a) as tasks:
        await asyncio.wait_for(a.wait_leading(), EVENTUALLY)
        await crash(tasks, a)
    await a.release()
    spec = (await read_lease(kube, namespace))["spec"]
    assert spec["holderIdentity"] == ""
    assert spec["leaseDurationSeconds"] == 1
    assert spec["leaseTransitions"] == 0
    assert MICRO_TIME.match(spec["renewTime"])

    b = elector(kube, namespace, "replica-b", **LONG)
    async with running(b):
        await asyncio.wait_for(b.wait_leading(), EVENTUALLY)
    assert (await read_lease(kube, namespace))["spec"]["leaseTransitions"] == 1
