"""The reconcile loop end to end against a real kube-apiserver (memory provider).

Each test runs its own controller with its own controllerName and GatewayClass,
so tests never see each other's Gateways as theirs.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import attrs
import pytest
from kubernetes_asyncio import client

from agc_controller.core.keys import ObjectKey
from agc_controller.core.resources import BY_KIND, POLICY_GROUP
from agc_controller.core.status import ApplyResult
from agc_controller.kube import api_client_from_kubeconfig, server_side_apply
from agc_controller.manager import Controller
from agc_controller.providers.memory import MemoryProvider
from agc_controller.settings import Settings
from agc_controller.translate import TranslateSettings
from agc_controller.translate.model import LoadBalancer
from agc_controller.translate.settings import CORE_FEATURES
from devcluster import ControlPlane

GW = "gateway.networking.k8s.io"
POLICY_VERSION = "v1alpha1"


@attrs.define
class Env:
    kube: client.ApiClient
    namespace: str
    controller_name: str
    class_name: str

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.kube)

    async def create(self, plural: str, body: dict[str, Any]) -> Any:
        return await self.custom.create_namespaced_custom_object(
            GW, "v1", self.namespace, plural, body
        )

    async def get(self, plural: str, name: str) -> Any:
        return await self.custom.get_namespaced_custom_object(
            GW, "v1", self.namespace, plural, name
        )

    async def patch(self, plural: str, name: str, body: dict[str, Any]) -> Any:
        return await self.custom.patch_namespaced_custom_object(
            GW,
            "v1",
            self.namespace,
            plural,
            name,
            body,
            _content_type="application/merge-patch+json",
        )

    async def create_policy(self, kind: str, name: str, spec: dict[str, Any]) -> Any:
        """One of our policies (group agc-controller.io); its plural is the kind's."""
        return await self.custom.create_namespaced_custom_object(
            POLICY_GROUP,
            POLICY_VERSION,
            self.namespace,
            BY_KIND[kind].plural,
            {
                "apiVersion": f"{POLICY_GROUP}/{POLICY_VERSION}",
                "kind": kind,
                "metadata": {"name": name},
                "spec": spec,
            },
        )

    async def get_policy(self, kind: str, name: str) -> Any:
        return await self.custom.get_namespaced_custom_object(
            POLICY_GROUP, POLICY_VERSION, self.namespace, BY_KIND[kind].plural, name
        )

    async def delete(self, plural: str, name: str) -> None:
        await self.custom.delete_namespaced_custom_object(GW, "v1", self.namespace, plural, name)

    async def gateway_class(self) -> None:
        await self.custom.create_cluster_custom_object(
            GW,
            "v1",
            "gatewayclasses",
            {
                "apiVersion": f"{GW}/v1",
                "kind": "GatewayClass",
                "metadata": {"name": self.class_name},
                "spec": {"controllerName": self.controller_name},
            },
        )

    async def gateway(self, name: str, listeners: list[dict[str, Any]] | None = None) -> None:
        await self.create(
            "gateways",
            {
                "apiVersion": f"{GW}/v1",
                "kind": "Gateway",
                "metadata": {"name": name},
                "spec": {
                    "gatewayClassName": self.class_name,
                    "listeners": listeners or [{"name": "http", "port": 80, "protocol": "HTTP"}],
                },
            },
        )

    async def route(self, name: str, gateway: str, path: str = "/", service: str = "web") -> None:
        await self.create(
            "httproutes",
            {
                "apiVersion": f"{GW}/v1",
                "kind": "HTTPRoute",
                "metadata": {"name": name},
                "spec": {
                    "parentRefs": [{"name": gateway}],
                    "rules": [
                        {
                            "matches": [{"path": {"type": "PathPrefix", "value": path}}],
                            "backendRefs": [{"name": service, "port": 80}],
                        }
                    ],
                },
            },
        )

    async def service(self, name: str = "web") -> None:
        await client.CoreV1Api(self.kube).create_namespaced_service(
            self.namespace,
            {
                "metadata": {"name": name},
                "spec": {"ports": [{"name": "http", "port": 80}]},
            },
        )


async def eventually(check: Callable[[], Awaitable[bool]], *, within: float = 30.0) -> None:
    async with asyncio.timeout(within):
        while not await check():
            await asyncio.sleep(0.1)


def condition(conditions: list[dict[str, Any]] | None, type_: str) -> dict[str, Any]:
    return next((c for c in conditions or [] if c["type"] == type_), {})


def our_parents(route: dict[str, Any], controller_name: str) -> list[dict[str, Any]]:
    return [
        p
        for p in (route.get("status") or {}).get("parents") or []
        if p["controllerName"] == controller_name
    ]


@pytest.fixture
async def env(kube: client.ApiClient, namespace: str) -> AsyncIterator[Env]:
    suffix = uuid.uuid4().hex[:8]
    e = Env(kube, namespace, f"agc-controller.io/test-{suffix}", f"agc-{suffix}")
    await e.gateway_class()
    yield e
    await e.custom.delete_cluster_custom_object(GW, "v1", "gatewayclasses", e.class_name)


@attrs.define
class Running:
    controller: Controller
    stop: asyncio.Event
    task: asyncio.Task[None]

    async def shutdown(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 30)


async def new_controller(
    env: Env,
    control_plane: ControlPlane,
    provider: Any = None,
    *,
    leader_election: bool = False,
    identity: str = "test",
    shutdown_grace: float = 25.0,
    translate_settings: TranslateSettings | None = None,
) -> tuple[client.ApiClient, Controller]:
    """A controller for `env` (its own controllerName) with its own API client."""
    api = await api_client_from_kubeconfig(control_plane.kubeconfig)
    controller = Controller(
        api,
        settings=Settings(
            controller_name=env.controller_name,
            workers=2,
            leader_election=leader_election,
            lease_namespace=env.namespace,
            identity=identity,
        ),
        translate_settings=translate_settings
        or TranslateSettings(controller_name=env.controller_name),
        provider=provider or MemoryProvider(),
        shutdown_grace=shutdown_grace,
    )
    return api, controller


async def start(
    env: Env,
    control_plane: ControlPlane,
    provider: Any = None,
    *,
    leader_election: bool = False,
    identity: str = "test",
    translate_settings: TranslateSettings | None = None,
) -> Running:
    api, controller = await new_controller(
        env,
        control_plane,
        provider,
        leader_election=leader_election,
        identity=identity,
        translate_settings=translate_settings,
    )
    stop = asyncio.Event()

    async def run() -> None:
        async with api:
            await controller.run(stop)

    return Running(controller, stop, asyncio.create_task(run()))


@pytest.fixture
async def running(env: Env, control_plane: ControlPlane) -> AsyncIterator[Running]:
    r = await start(env, control_plane)
    yield r
    await r.shutdown()


async def test_statuses_appear(env: Env, running: Running) -> None:
    await env.service()
    await env.gateway("gw")
    await env.route("web", "gw")

    async def done() -> bool:
        gw = await env.get("gateways", "gw")
        listeners = (gw.get("status") or {}).get("listeners") or []
        route = await env.get("httproutes", "web")
        parents = our_parents(route, env.controller_name)
        return (
            condition(gw["status"].get("conditions"), "Programmed").get("status") == "True"
            and bool(listeners)
            and listeners[0]["attachedRoutes"] == 1
            and bool(parents)
            and condition(parents[0]["conditions"], "Accepted").get("status") == "True"
        )

    await eventually(done)
    gw = await env.get("gateways", "gw")
    assert gw["status"]["addresses"][0]["type"] == "IPAddress"
    cls = await env.custom.get_cluster_custom_object(GW, "v1", "gatewayclasses", env.class_name)
    assert condition(cls["status"]["conditions"], "Accepted")["status"] == "True"
    assert {"name": "HTTPRoute"} in cls["status"]["supportedFeatures"]


async def _claimed_features(env: Env, control_plane: ControlPlane) -> set[str]:
    """The features a class claims for a controller that can program retries."""
    claims = CORE_FEATURES | {"HTTPRouteRetry", "HTTPRouteRetryConnectionError"}
    running = await start(
        env,
        control_plane,
        translate_settings=TranslateSettings(
            controller_name=env.controller_name, supported_features=claims
        ),
    )
    try:

        async def accepted() -> bool:
            cls = await env.custom.get_cluster_custom_object(
                GW, "v1", "gatewayclasses", env.class_name
            )
            status = cls.get("status") or {}
            return bool(status.get("supportedFeatures")) and (
                condition(status.get("conditions"), "Accepted").get("status") == "True"
            )

        await eventually(accepted)
        cls = await env.custom.get_cluster_custom_object(GW, "v1", "gatewayclasses", env.class_name)
        return {f["name"] for f in cls["status"]["supportedFeatures"]}
    finally:
        await running.shutdown()


async def test_the_standard_crds_have_no_retry_so_the_class_does_not_claim_it(
    env: Env, control_plane: ControlPlane
) -> None:
    assert await _claimed_features(env, control_plane) == CORE_FEATURES


@pytest.mark.experimental_channel
async def test_the_experimental_crds_have_retry_and_the_class_claims_it(
    env: Env, control_plane: ControlPlane
) -> None:
    features = await _claimed_features(env, control_plane)
    assert features == CORE_FEATURES | {"HTTPRouteRetry", "HTTPRouteRetryConnectionError"}


async def test_edit_moves_observed_generation_and_delete_detaches(
    env: Env, running: Running
) -> None:
    await env.service()
    await env.gateway("gw")
    await env.route("web", "gw")
    await eventually(lambda: _attached(env, "gw", 1))
    edited = await env.patch("httproutes", "web", {"spec": {"hostnames": ["example.com"]}})
    generation = edited["metadata"]["generation"]
    assert generation == 2

    async def observed() -> bool:
        parents = our_parents(await env.get("httproutes", "web"), env.controller_name)
        return bool(parents) and all(
            c["observedGeneration"] == generation for c in parents[0]["conditions"]
        )

    await eventually(observed)
    await env.delete("httproutes", "web")
    await eventually(lambda: _attached(env, "gw", 0))


async def test_route_moving_to_another_gateway_loses_our_old_entry(
    env: Env, running: Running
) -> None:
    await env.service()
    await env.gateway("a")
    await env.gateway("b")
    await env.route("web", "a")
    await eventually(lambda: _attached(env, "a", 1))
    await env.patch("httproutes", "web", {"spec": {"parentRefs": [{"name": "b"}]}})

    async def moved() -> bool:
        parents = our_parents(await env.get("httproutes", "web"), env.controller_name)
        return [p["parentRef"]["name"] for p in parents] == ["b"]

    await eventually(moved)
    await eventually(lambda: _attached(env, "a", 0))
    await eventually(lambda: _attached(env, "b", 1))


async def test_policy_ancestors_follow_its_target_routes_between_gateways(
    env: Env, running: Running
) -> None:
    await env.service()
    await env.gateway("a")
    await env.gateway("b")
    await env.route("web", "a")
    await env.create_policy(
        "RateLimitPolicy",
        "limit",
        {
            "targetRefs": [
                {"group": GW, "kind": "HTTPRoute", "name": "web", "sectionName": "nope"}
            ],
            "limit": {"requests": 5, "unit": "Minute"},
        },
    )

    async def ancestors() -> dict[str, tuple[str, str]]:
        """Gateway name -> (Accepted status, reason) of our entries."""
        policy = await env.get_policy("RateLimitPolicy", "limit")
        return {
            entry["ancestorRef"]["name"]: (
                condition(entry["conditions"], "Accepted")["status"],
                condition(entry["conditions"], "Accepted")["reason"],
            )
            for entry in (policy.get("status") or {}).get("ancestors") or []
            if entry["controllerName"] == env.controller_name
        }

    async def ancestors_are(want: dict[str, tuple[str, str]]) -> bool:
        return await ancestors() == want

    await eventually(lambda: ancestors_are({"a": ("False", "TargetNotFound")}))
    # the target fixed: a spec edit of the policy alone reconciles its Gateway
    await env.custom.patch_namespaced_custom_object(
        POLICY_GROUP,
        "v1alpha1",
        env.namespace,
        "ratelimitpolicies",
        "limit",
        {"spec": {"targetRefs": [{"group": GW, "kind": "HTTPRoute", "name": "web"}]}},
        _content_type="application/merge-patch+json",
    )
    await eventually(lambda: ancestors_are({"a": ("True", "Accepted")}))
    # the route moves: Gateway a's entry goes, Gateway b's comes
    await env.patch("httproutes", "web", {"spec": {"parentRefs": [{"name": "b"}]}})
    await eventually(lambda: ancestors_are({"b": ("True", "Accepted")}))


async def _attached(env: Env, gateway: str, count: int) -> bool:
    listeners = ((await env.get("gateways", gateway)).get("status") or {}).get("listeners") or []
    return bool(listeners) and listeners[0]["attachedRoutes"] == count


@attrs.define
class PoisonedProvider(MemoryProvider):
    """Raises for one Gateway, as a bug triggered by one object would."""

    poisoned: str = "poison"
    attempts: int = 0

    async def apply(self, model: LoadBalancer) -> ApplyResult:
        if model.gateway.name == self.poisoned:
            self.attempts += 1
            raise RuntimeError("boom")
        return await super().apply(model)


async def test_poisoned_key_backs_off_without_blocking_others(
    env: Env, control_plane: ControlPlane
) -> None:
    provider = PoisonedProvider()
    running = await start(env, control_plane, provider)
    try:
        await env.gateway("poison")
        await eventually(lambda: _is(provider.attempts >= 3))
        await env.gateway("healthy")
        await eventually(lambda: _programmed(env, "healthy"))
        # retried with growing delays, never dropped
        key = ObjectKey("Gateway", env.namespace, "poison")
        assert running.controller.queue.num_requeues(key) >= 3
    finally:
        await running.shutdown()


async def _is(value: bool) -> bool:
    return value


async def _programmed(env: Env, gateway: str) -> bool:
    gw = await env.get("gateways", gateway)
    return (
        condition((gw.get("status") or {}).get("conditions"), "Programmed").get("status") == "True"
    )


async def test_converges_after_apiserver_restart(
    env: Env, running: Running, control_plane: ControlPlane
) -> None:
    await env.service()
    await env.gateway("gw")
    await env.route("one", "gw")
    await eventually(lambda: _attached(env, "gw", 1))
    # on this thread: the new apiserver must not die with a worker thread
    control_plane.restart_apiserver()
    # the test's own client drops its kept-alive connections to the old apiserver
    # once its loop runs (a POST on one would fail, and is not retried)
    await asyncio.sleep(0.05)
    # changes made right after the restart must not be lost by the broken watches
    await env.route("two", "gw", path="/two")
    await eventually(lambda: _attached(env, "gw", 2), within=60)


async def test_leader_election_one_leader_and_failover(
    env: Env, control_plane: ControlPlane
) -> None:
    first = await start(env, control_plane, leader_election=True, identity="first")
    await eventually(lambda: _is(first.controller.is_leader))
    second = await start(env, control_plane, leader_election=True, identity="second")
    try:
        await env.gateway("gw")
        await eventually(lambda: _programmed(env, "gw"))
        await asyncio.sleep(1)
        assert not second.controller.is_leader
        await first.shutdown()  # releases the lease
        await eventually(lambda: _is(second.controller.is_leader), within=15)
        await env.service()
        await env.route("web", "gw")
        await eventually(lambda: _attached(env, "gw", 1))
    finally:
        if not first.task.done():
            await first.shutdown()
        await second.shutdown()


async def test_tlsroute_on_our_gateway_gets_status(env: Env, running: Running) -> None:
    await env.gateway("gw")
    await env.create(
        "tlsroutes",
        {
            "apiVersion": f"{GW}/v1",
            "kind": "TLSRoute",
            "metadata": {"name": "tls"},
            "spec": {
                "parentRefs": [{"name": "gw"}],
                "hostnames": ["secure.example.com"],
                "rules": [{"backendRefs": [{"name": "backend", "port": 443}]}],
            },
        },
    )

    async def rejected() -> bool:
        parents = our_parents(await env.get("tlsroutes", "tls"), env.controller_name)
        accepted = condition(parents[0]["conditions"], "Accepted") if parents else {}
        return accepted.get("reason") == "NotAllowedByListeners"

    await eventually(rejected)
    # the Gateway's status is written apart from the route's, maybe a moment later
    await eventually(lambda: _attached(env, "gw", 0))


async def test_a_route_follows_the_httproutefilter_it_names(env: Env, running: Running) -> None:
    """A rule naming a missing HTTPRouteFilter is unresolved; creating the filter, then
    breaking it, reaches the route through the filter's own watch."""
    await env.service()
    await env.gateway("gw")
    await env.create(
        "httproutes",
        {
            "apiVersion": f"{GW}/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "rewritten"},
            "spec": {
                "parentRefs": [{"name": "gw"}],
                "rules": [
                    {
                        "filters": [
                            {
                                "type": "ExtensionRef",
                                "extensionRef": {
                                    "group": POLICY_GROUP,
                                    "kind": "HTTPRouteFilter",
                                    "name": "strip",
                                },
                            }
                        ],
                        "backendRefs": [{"name": "web", "port": 80}],
                    }
                ],
            },
        },
    )

    async def route_condition(type_: str) -> dict[str, Any]:
        parents = our_parents(await env.get("httproutes", "rewritten"), env.controller_name)
        return condition(parents[0]["conditions"], type_) if parents else {}

    async def resolved(status: str) -> bool:
        return (await route_condition("ResolvedRefs")).get("status") == status

    await eventually(lambda: resolved("False"))
    assert "HTTPRouteFilter" in (await route_condition("ResolvedRefs"))["message"]

    async def apply_filter(substitution: str) -> None:
        body = {
            "apiVersion": f"{POLICY_GROUP}/{POLICY_VERSION}",
            "kind": "HTTPRouteFilter",
            "metadata": {"name": "strip", "namespace": env.namespace},
            "spec": {
                "urlRewrite": {
                    "path": {
                        "type": "ReplaceRegexMatch",
                        "replaceRegexMatch": {
                            "pattern": "^/v1(/.*)$",
                            "substitution": substitution,
                        },
                    }
                }
            },
        }
        await server_side_apply(env.kube, body, plural="httproutefilters")

    await apply_filter("\\1")
    await eventually(lambda: resolved("True"))
    # a group the pattern lacks: the rule is dropped, the route says why
    await apply_filter("/\\2")

    async def dropped() -> bool:
        return (await route_condition("Accepted")).get("status") == "False"

    await eventually(dropped)
    assert "names a group the pattern lacks" in (await route_condition("Accepted"))["message"]
