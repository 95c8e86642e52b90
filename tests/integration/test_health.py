"""/healthz, /readyz, /metrics, Gateway Events and the bounded shutdown, against a real
kube-apiserver with the controller in this process (memory provider)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import attrs
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agc_controller.core.status import ApplyResult
from agc_controller.manager import Controller
from agc_controller.providers.memory import MemoryProvider
from agc_controller.runtime.health import HealthServer
from agc_controller.translate.model import LoadBalancer
from devcluster import ControlPlane
from tests.integration.test_controller import Env, eventually, new_controller
from tests.integration.test_controller import env as env  # noqa: PLC0414 (the fixture)


@attrs.define
class Served:
    controller: Controller
    server: HealthServer
    stop: asyncio.Event
    task: asyncio.Task[None]

    async def get(self, path: str) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.server.port}{path}"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            return response.status, await response.text()

    async def shutdown(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 30)


async def serve(
    env: Env,
    control_plane: ControlPlane,
    provider: Any,
    *,
    identity: str = "test",
    leader_election: bool = False,
    shutdown_grace: float = 25.0,
) -> Served:
    api, controller = await new_controller(
        env,
        control_plane,
        provider,
        identity=identity,
        leader_election=leader_election,
        shutdown_grace=shutdown_grace,
    )
    server = HealthServer(
        not_ready_reasons=controller.not_ready_reasons,
        registry=controller.metrics.registry,
        host="127.0.0.1",
        port=0,
    )
    await server.start()
    stop = asyncio.Event()

    async def run() -> None:
        async with api:
            try:
                await controller.run(stop)
            finally:
                await server.stop()

    return Served(controller, server, stop, asyncio.create_task(run()))


@pytest.fixture
async def served(env: Env, control_plane: ControlPlane) -> AsyncIterator[Served]:
    s = await serve(env, control_plane, MemoryProvider())
    yield s
    await s.shutdown()


async def _programmed(env: Env, gateway: str, status: str = "True") -> bool:
    gw = await env.get("gateways", gateway)
    conditions = (gw.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Programmed" and c["status"] == status for c in conditions)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_after_a_reconcile(env: Env, served: Served) -> None:
    await env.service()
    await env.gateway("gw")
    await env.route("web", "gw")
    await eventually(lambda: _programmed(env, "gw"))
    await eventually(lambda: _status_is(served, "/readyz", 200))
    assert await served.get("/healthz") == (200, "ok\n")

    status, text = await served.get("/metrics")
    assert status == 200
    got = samples(text)

    def value(metric: str, **labels: str) -> float:
        return got[(metric, frozenset(labels.items()))]

    assert value("workqueue_adds_total", name="agc-controller") >= 2  # the class and the Gateway
    assert value("workqueue_depth", name="agc-controller") >= 0
    assert value("workqueue_queue_duration_seconds_count", name="agc-controller") >= 2
    assert value("workqueue_work_duration_seconds_count", name="agc-controller") >= 2
    assert value("workqueue_retries_total", name="agc-controller") >= 0
    assert value("controller_runtime_reconcile_total", controller="Gateway", result="success") >= 1
    assert (
        value("controller_runtime_reconcile_total", controller="GatewayClass", result="success")
        >= 1
    )
    assert 0 < value("controller_runtime_reconcile_time_seconds_sum", controller="Gateway") < 60
    applies = value(
        "agc_provider_apply_duration_seconds_count", provider="memory", outcome="programmed"
    )
    assert applies >= 1
    assert value("agc_provider_apply_errors_total", provider="memory") == 0
    assert value("leader_election_master_status", name="agc-controller") == 1
    families = {family.name for family in text_string_to_metric_families(text)}
    # fed by the local and azure providers; declared (with no samples) until they count
    assert {"agc_nginx_reloads", "agc_arm_requests"} <= families


async def _status_is(served: Served, path: str, status: int) -> bool:
    return (await served.get(path))[0] == status


@attrs.define
class GatedProvider(MemoryProvider):
    """Applies only once `release` is set; `rejecting` makes it refuse every model."""

    release: asyncio.Event = attrs.field(factory=asyncio.Event)
    # set when an apply is waiting for `release`
    applying: asyncio.Event = attrs.field(factory=asyncio.Event)
    rejecting: bool = False

    async def apply(self, model: LoadBalancer) -> ApplyResult:
        self.applying.set()
        await self.release.wait()
        if self.rejecting:
            self.applies += 1
            return ApplyResult(
                programmed=False, reason="Invalid", message="The data plane said no."
            )
        return await super().apply(model)


async def test_leader_is_ready_after_its_first_pass_and_a_standby_once_synced(
    env: Env, control_plane: ControlPlane
) -> None:
    await env.gateway("gw")
    provider = GatedProvider()
    leader = await serve(env, control_plane, provider, identity="leader", leader_election=True)
    standby = None
    try:
        await eventually(lambda: _is(leader.controller.is_leader))
        status, body = await leader.get("/readyz")
        assert status == 503
        assert "first pass as leader" in body
        standby = await serve(
            env, control_plane, MemoryProvider(), identity="standby", leader_election=True
        )
        await eventually(lambda: _status_is(standby, "/readyz", 200))
        assert not standby.controller.is_leader
        assert (await leader.get("/readyz"))[0] == 503
        provider.release.set()
        await eventually(lambda: _status_is(leader, "/readyz", 200))
    finally:
        provider.release.set()
        await leader.shutdown()
        if standby is not None:
            await standby.shutdown()


async def _is(value: bool) -> bool:
    return value


async def gateway_events(env: Env, gateway: str) -> list[tuple[str, str]]:
    events = await env.custom.list_namespaced_custom_object(
        "events.k8s.io", "v1", env.namespace, "events"
    )
    ordered = sorted(events["items"], key=lambda e: e["eventTime"])
    return [
        (e["type"], e["reason"])
        for e in ordered
        if e["regarding"]["kind"] == "Gateway" and e["regarding"]["name"] == gateway
    ]


async def test_events_only_on_programmed_transitions(env: Env, control_plane: ControlPlane) -> None:
    provider = GatedProvider()
    provider.release.set()
    served = await serve(env, control_plane, provider)
    try:
        await env.gateway("gw")
        await eventually(lambda: _programmed(env, "gw"))
        await eventually(lambda: _events_are(env, [("Normal", "Programmed")]))

        # reconciles that change nothing announce nothing
        for i in range(3):
            before = provider.applies
            await env.patch("gateways", "gw", {"metadata": {"annotations": {"touch": str(i)}}})
            await eventually(lambda before=before: _is(provider.applies > before))
        provider.rejecting = True
        await env.patch("gateways", "gw", {"metadata": {"annotations": {"touch": "fail"}}})
        await eventually(lambda: _programmed(env, "gw", "False"))
        await eventually(
            lambda: _events_are(env, [("Normal", "Programmed"), ("Warning", "ProgrammingFailed")])
        )
        provider.rejecting = False
        await env.patch("gateways", "gw", {"metadata": {"annotations": {"touch": "ok"}}})
        await eventually(lambda: _programmed(env, "gw"))
        await eventually(
            lambda: _events_are(
                env,
                [
                    ("Normal", "Programmed"),
                    ("Warning", "ProgrammingFailed"),
                    ("Normal", "Recovered"),
                ],
            )
        )
    finally:
        await served.shutdown()


async def _events_are(env: Env, expected: list[tuple[str, str]]) -> bool:
    got = await gateway_events(env, "gw")
    assert len(got) <= len(expected), f"more events than transitions: {got}"
    return got == expected


async def test_stop_finishes_in_flight_work_and_writes_its_status(
    env: Env, control_plane: ControlPlane
) -> None:
    provider = GatedProvider()
    served = await serve(env, control_plane, provider)
    await env.gateway("gw")
    await asyncio.wait_for(provider.applying.wait(), 30)
    served.stop.set()
    await asyncio.sleep(0.2)
    assert not served.task.done()  # waiting for the in-flight reconcile
    provider.release.set()
    await asyncio.wait_for(served.task, 30)
    assert await _programmed(env, "gw")


async def test_stop_gives_up_on_in_flight_work_after_the_grace_period(
    env: Env, control_plane: ControlPlane
) -> None:
    provider = GatedProvider()  # never released: an apply that hangs
    served = await serve(env, control_plane, provider, shutdown_grace=3.5)
    await env.gateway("gw")
    await asyncio.wait_for(provider.applying.wait(), 30)
    served.stop.set()
    # a hang detector, not a speed requirement: without the grace period it never ends
    await asyncio.wait_for(served.task, 20)
    assert not await _programmed(env, "gw")
