"""The azure provider end to end: real kube-apiserver + controller + ARM test server.

The controller runs with the azure provider and its translate settings; the
ARM test server stands in for Azure (the real SDK talks to it over HTTPS).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from kubernetes_asyncio import client

from agc_controller.core.keys import ObjectKey
from agc_controller.kube import api_client_from_kubeconfig
from agc_controller.manager import Controller
from agc_controller.providers.azure import AzureProvider, azure_translate_settings, naming
from agc_controller.settings import Settings
from devcluster import ControlPlane
from tests.azure.conftest import (
    APPLICATION_GATEWAY,
    RESOURCE_GROUP,
    SUBSCRIPTION,
    CallCounter,
    StaticToken,
    settings_for,
)
from tests.azure.server import ArmServer, Failure, wait_idle
from tests.integration.test_controller import GW, Env, condition, eventually, our_parents


@attrs.define
class Azure:
    env: Env
    arm: ArmServer
    provider: AzureProvider
    calls: CallCounter

    def props(self) -> dict[str, Any]:
        gateway = self.arm.gateway(SUBSCRIPTION, RESOURCE_GROUP, APPLICATION_GATEWAY)
        return dict(gateway["properties"])

    def names(self, collection: str) -> list[str]:
        return [c["name"] for c in self.props().get(collection) or []]

    def owned_by(self, gateway: str, collection: str) -> list[str]:
        prefix = naming.gateway_prefix(ObjectKey("Gateway", self.env.namespace, gateway))
        return [n for n in self.names(collection) if n.startswith(prefix)]

    def paths(self) -> list[list[str]]:
        return [
            rule["properties"]["paths"]
            for path_map in self.props().get("urlPathMaps") or []
            for rule in path_map["properties"]["pathRules"]
        ]

    async def programmed(self, gateway: str) -> dict[str, Any]:
        gw = await self.env.get("gateways", gateway)
        return condition((gw.get("status") or {}).get("conditions"), "Programmed")

    async def is_programmed(self, gateway: str, status: str = "True") -> bool:
        return (await self.programmed(gateway)).get("status") == status

    async def endpoints(self, service: str, addresses: list[str], pod: str | None = None) -> None:
        """Ready endpoints of `service` on port 9000 (each the pod `pod`, if named)."""
        await self.env.service(service)
        await client.DiscoveryV1Api(self.env.kube).create_namespaced_endpoint_slice(
            self.env.namespace,
            {
                "metadata": {
                    "name": f"{service}-1",
                    "labels": {"kubernetes.io/service-name": service},
                },
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 9000}],
                "endpoints": [
                    {
                        "addresses": [a],
                        "conditions": {"ready": True},
                        **({"targetRef": {"kind": "Pod", "name": pod}} if pod else {}),
                    }
                    for a in addresses
                ],
            },
        )


@pytest.fixture
async def env(kube: client.ApiClient, namespace: str) -> AsyncIterator[Env]:
    suffix = uuid.uuid4().hex[:8]
    e = Env(kube, namespace, f"agc-controller.io/azure-{suffix}", f"agc-azure-{suffix}")
    await e.gateway_class()
    yield e
    await e.custom.delete_cluster_custom_object(GW, "v1", "gatewayclasses", e.class_name)


@pytest.fixture
async def azure(env: Env, control_plane: ControlPlane, tmp_path: Path) -> AsyncIterator[Azure]:
    async with ArmServer(tmp_path) as arm:
        arm.seed_gateway(SUBSCRIPTION, RESOURCE_GROUP, APPLICATION_GATEWAY)
        calls = CallCounter()
        provider = AzureProvider(
            settings=settings_for(arm), credential=StaticToken(), on_arm_call=calls
        )
        api = await api_client_from_kubeconfig(control_plane.kubeconfig)
        controller = Controller(
            api,
            settings=Settings(
                controller_name=env.controller_name, workers=2, leader_election=False
            ),
            translate_settings=attrs.evolve(
                azure_translate_settings(env.controller_name),
                ingress_controller=f"{env.controller_name}-ingress",
            ),
            provider=provider,
        )
        stop = asyncio.Event()

        async def run() -> None:
            async with api, provider:
                await controller.run(stop)

        task = asyncio.create_task(run())
        try:
            yield Azure(env, arm, provider, calls)
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)


async def _route(
    env: Env, name: str, gateway: str, rules: list[dict[str, Any]], **spec: Any
) -> None:
    await env.create(
        "httproutes",
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": name},
            "spec": {"parentRefs": [{"name": gateway}], "rules": rules, **spec},
        },
    )


def _prefix(path: str, service: str = "web") -> dict[str, Any]:
    return {
        "matches": [{"path": {"type": "PathPrefix", "value": path}}],
        "backendRefs": [{"name": service, "port": 80}],
    }


async def test_put_body_status_and_unsupported_features(azure: Azure) -> None:
    env = azure.env
    await azure.endpoints("web", ["10.2.0.5", "10.2.0.6"])
    await env.gateway("gw")
    await _route(env, "web", "gw", [_prefix("/app")], hostnames=["www.example.com"])
    header_rule = {
        "matches": [{"path": {"value": "/h"}, "headers": [{"name": "x-a", "value": "1"}]}],
        "backendRefs": [{"name": "web", "port": 80}],
    }
    await _route(env, "mixed", "gw", [_prefix("/ok"), header_rule])
    await _route(env, "headers", "gw", [header_rule])
    await eventually(lambda: azure.is_programmed("gw"))
    await eventually(
        lambda: _is(["/app", "/app/*"] in azure.paths() and ["/ok", "/ok/*"] in azure.paths())
    )

    props = azure.props()
    listeners = {ls["name"]: ls["properties"] for ls in props["httpListeners"]}
    assert any(p.get("hostNames") == ["www.example.com"] for p in listeners.values())
    pools = [p for p in props["backendAddressPools"] if p["name"].endswith("-web-80")]
    assert [a["ipAddress"] for a in pools[0]["properties"]["backendAddresses"]] == [
        "10.2.0.5",
        "10.2.0.6",
    ]
    assert ["/h"] not in azure.paths()
    gw = await env.get("gateways", "gw")
    assert gw["status"]["addresses"] == [{"type": "IPAddress", "value": "203.0.113.10"}]

    async def route_conditions(name: str) -> dict[str, dict[str, Any]]:
        parents = our_parents(await env.get("httproutes", name), env.controller_name)
        return {c["type"]: c for c in parents[0]["conditions"]} if parents else {}

    await eventually(lambda: _has(route_conditions("headers"), "Accepted"))
    rejected = (await route_conditions("headers"))["Accepted"]
    assert rejected["status"] == "False"
    assert rejected["reason"] == "UnsupportedValue"
    assert (
        "spec.rules[0].matches[0].headers is not supported by the azure provider"
        in (rejected["message"])
    )
    partial = (await route_conditions("mixed"))["PartiallyInvalid"]
    assert "Dropped Rule 1: spec.rules[1].matches[0].headers" in partial["message"]
    assert azure.calls.counts[("PUT", 201)] >= 1


async def test_ingress_goes_to_the_application_gateway(azure: Azure) -> None:
    """An IngressClass of ours on the azure provider: its Ingresses' paths become path
    rules, the Ingress gets the frontend's address, and what Application Gateway
    cannot do (a canary's header match) reaches the Ingress as an Event."""
    env = azure.env
    await azure.endpoints("web", ["10.2.0.5"])
    networking = client.NetworkingV1Api(env.kube)
    class_name = f"{env.class_name}-ingress"
    await networking.create_ingress_class(
        {
            "metadata": {"name": class_name},
            "spec": {"controller": f"{env.controller_name}-ingress"},
        }
    )
    try:
        for name, annotations in (
            ("shop", {}),
            (
                "shop-canary",
                {
                    "nginx.ingress.kubernetes.io/canary": "true",
                    "nginx.ingress.kubernetes.io/canary-by-header": "X-Canary",
                },
            ),
        ):
            await networking.create_namespaced_ingress(
                env.namespace,
                {
                    "metadata": {"name": name, "annotations": annotations},
                    "spec": {
                        "ingressClassName": class_name,
                        "rules": [
                            {
                                "host": "shop.example.com",
                                "http": {
                                    "paths": [
                                        {
                                            "path": "/app",
                                            "pathType": "Prefix",
                                            "backend": {
                                                "service": {
                                                    "name": "web",
                                                    "port": {"number": 80},
                                                }
                                            },
                                        }
                                    ]
                                },
                            }
                        ],
                    },
                },
            )
        await eventually(lambda: _is(["/app", "/app/*"] in azure.paths()))
        listeners = [ls["properties"] for ls in azure.props()["httpListeners"]]
        assert any(p.get("hostNames") == ["shop.example.com"] for p in listeners)

        async def addressed() -> bool:
            ingress = await networking.read_namespaced_ingress("shop", env.namespace)
            lb = ingress.status.load_balancer if ingress.status else None
            return bool(lb and lb.ingress and lb.ingress[0].ip == "203.0.113.10")

        await eventually(addressed)

        async def reported() -> bool:
            events = await client.EventsV1Api(env.kube).list_namespaced_event(env.namespace)
            return any(
                e.regarding.name == "shop" and e.reason == "UnsupportedValue"
                for e in events.items
                if e.regarding
            )

        await eventually(reported)
    finally:
        await networking.delete_ingress_class(class_name)


def _probed_pod(path: str) -> dict[str, Any]:
    return {
        "metadata": {"name": "web-0"},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "app",
                    "ports": [{"name": "http", "containerPort": 9000}],
                    "readinessProbe": {"httpGet": {"path": path, "port": "http"}},
                }
            ]
        },
    }


async def test_a_backends_probe_follows_its_pods_readiness_probe(azure: Azure) -> None:
    """Without a HealthCheckPolicy, the probe is the pods' readinessProbe (AGIC's
    behaviour): pods are watched, and a pod replaced by one probing elsewhere (a pod's
    probes cannot be edited in place) re-programs it."""
    env = azure.env
    pods = client.CoreV1Api(env.kube)
    # no controller-manager here makes the namespace's default account
    await pods.create_namespaced_service_account(env.namespace, {"metadata": {"name": "default"}})
    await pods.create_namespaced_pod(env.namespace, _probed_pod("/ready"))
    await azure.endpoints("web", ["10.2.0.5"], pod="web-0")
    await env.gateway("gw")
    await _route(env, "web", "gw", [_prefix("/")])

    def probe_paths() -> list[str]:
        return [p["properties"]["path"] for p in azure.props().get("probes") or []]

    await eventually(lambda: _is(probe_paths() == ["/ready"]))
    # the API server's defaults for the times: Kubernetes', not Application Gateway's
    probe = azure.props()["probes"][0]["properties"]
    assert (probe["interval"], probe["timeout"], probe["unhealthyThreshold"]) == (10, 1, 3)
    await pods.delete_namespaced_pod("web-0", env.namespace, grace_period_seconds=0)
    await pods.create_namespaced_pod(env.namespace, _probed_pod("/healthz"))
    await eventually(lambda: _is(probe_paths() == ["/healthz"]))


async def test_burst_of_edits_coalesces(azure: Azure) -> None:
    env = azure.env
    azure.arm.operation_seconds = 1.5
    await azure.endpoints("web", ["10.2.0.5"])
    await env.gateway("gw")
    await _route(env, "web", "gw", [_prefix("/v0")])
    await eventually(lambda: _is(["/v0", "/v0/*"] in azure.paths()))
    await _idle(azure.arm)
    before = len(azure.arm.puts())
    started = time.monotonic()
    for i in range(1, 51):
        await env.patch("httproutes", "web", {"spec": {"rules": [_prefix(f"/v{i}")]}})
    assert time.monotonic() - started < 5
    await eventually(lambda: _is(["/v50", "/v50/*"] in azure.paths()))
    await _idle(azure.arm)
    await asyncio.sleep(0.5)
    assert len(azure.arm.puts()) - before <= 2


async def test_unowned_child_added_out_of_band_survives(azure: Azure) -> None:
    env = azure.env
    await azure.endpoints("web", ["10.2.0.5"])
    await env.gateway("gw")
    await _route(env, "web", "gw", [_prefix("/a")])
    await eventually(lambda: _is(["/a", "/a/*"] in azure.paths()))
    await _idle(azure.arm)
    gateway = azure.arm.gateway(SUBSCRIPTION, RESOURCE_GROUP, APPLICATION_GATEWAY)
    gateway["properties"]["backendAddressPools"].append(
        {"name": "owners-pool", "properties": {"backendAddresses": [{"fqdn": "legacy.example"}]}}
    )
    gateway["etag"] = 'W/"out-of-band"'
    await env.patch("httproutes", "web", {"spec": {"rules": [_prefix("/b")]}})
    await eventually(lambda: _is(["/b", "/b/*"] in azure.paths()))
    assert "owners-pool" in azure.names("backendAddressPools")
    assert azure.arm.puts()[-1].headers["If-Match"] == 'W/"out-of-band"'


async def test_injected_failures_converge_and_permanent_ones_show(azure: Azure) -> None:
    env = azure.env
    arm = azure.arm
    await azure.endpoints("web", ["10.2.0.5"])
    arm.inject(Failure("PUT", 429, "RetryableErrorDueToAnotherOperation", "busy", retry_after=0.2))
    arm.inject(Failure("PUT", 412, "PreconditionFailed", "The condition is not met."))
    arm.inject(Failure("PUT", 500, "InternalServerError", "Internal error."))
    arm.inject(Failure("LRO", 0, "InternalServerError", "The operation failed."))
    await env.gateway("gw")
    await _route(env, "web", "gw", [_prefix("/a")])
    await eventually(lambda: _is(["/a", "/a/*"] in azure.paths()))
    await eventually(lambda: azure.is_programmed("gw"))
    statuses = {r.status for r in arm.requests if r.method == "PUT"}
    assert {429, 412, 500, 201} <= statuses
    assert arm.props_state() == "Succeeded"

    arm.inject(Failure("PUT", 400, "ApplicationGatewayInvalidConfig", "Nope, not this.", times=100))
    await env.patch("httproutes", "web", {"spec": {"rules": [_prefix("/b")]}})
    await eventually(lambda: azure.is_programmed("gw", "False"))
    programmed = await azure.programmed("gw")
    assert programmed["reason"] == "Invalid"
    assert "Nope, not this." in programmed["message"]

    arm.failures.clear()
    await env.patch("httproutes", "web", {"spec": {"rules": [_prefix("/c")]}})
    await eventually(lambda: azure.is_programmed("gw"))
    assert ["/c", "/c/*"] in azure.paths()


async def test_deleting_a_gateway_removes_exactly_its_children(azure: Azure) -> None:
    env = azure.env
    await azure.endpoints("web", ["10.2.0.5"])
    await env.gateway("one")
    await env.gateway("two", [{"name": "http", "port": 8080, "protocol": "HTTP"}])
    await _route(env, "r1", "one", [_prefix("/one")])
    await _route(env, "r2", "two", [_prefix("/two")])
    await eventually(
        lambda: _is(["/one", "/one/*"] in azure.paths() and ["/two", "/two/*"] in azure.paths())
    )
    kept = {
        c: azure.owned_by("two", c)
        for c in ("httpListeners", "backendAddressPools", "requestRoutingRules")
    }
    assert all(kept.values())
    await env.delete("gateways", "one")
    await eventually(lambda: _is(not azure.owned_by("one", "httpListeners")))
    for collection in (
        "backendAddressPools",
        "backendHttpSettingsCollection",
        "probes",
        "urlPathMaps",
        "requestRoutingRules",
    ):
        assert azure.owned_by("one", collection) == []
    assert {c: azure.owned_by("two", c) for c in kept} == kept
    assert azure.names("frontendPorts") == ["agc-port-8080"]


async def _is(value: bool) -> bool:
    return value


async def _has(conditions: Any, type_: str) -> bool:
    return type_ in await conditions


async def _idle(arm: ArmServer) -> None:
    await wait_idle(arm)
