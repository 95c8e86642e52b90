"""StatusWriter against a real kube-apiserver with the Gateway API CRDs.

The CRD schemas validate every status we write, so a successful read-back
also proves the shape (conditions, listeners, supportedFeatures, parents).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from kubernetes_asyncio import client
from structlog.testing import capture_logs

from agc_controller.core.keys import ObjectKey
from agc_controller.core.status import (
    Condition,
    GatewayAddress,
    GatewayClassStatus,
    GatewayStatus,
    ListenerStatus,
    ParentReference,
    PolicyAncestorStatus,
    PolicyStatus,
    RouteGroupKind,
    RouteParentStatus,
    RouteStatus,
)
from agc_controller.core.timefmt import rfc3339
from agc_controller.status import StaleStatusError, StatusWriter

GW = "gateway.networking.k8s.io"
OURS = "example.com/agc-controller"
OTHER = "other.example.org/gateway-controller"
T1 = 1_714_557_600.0  # 2024-05-01T10:00:00Z


class FakeClock:
    def __init__(self, wall: float) -> None:
        self.now = wall

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


class CountingApi:
    """Passes every call to the real ApiClient and records (method, path)."""

    def __init__(self, api: client.ApiClient) -> None:
        self._api = api
        self.calls: list[tuple[str, str]] = []

    async def call_api(self, path: str, method: str, **kwargs: Any) -> Any:
        self.calls.append((method, path))
        return await self._api.call_api(path, method, **kwargs)


def condition(
    type_: str, status: Any = "True", reason: str = "Accepted", gen: int = 1
) -> Condition:
    return Condition(
        type=type_,
        status=status,
        reason=reason,
        message="Set by the test.",
        observed_generation=gen,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T1)


@pytest.fixture
def spy(kube: client.ApiClient) -> CountingApi:
    return CountingApi(kube)


@pytest.fixture
def writer(spy: CountingApi, clock: FakeClock) -> StatusWriter:
    return StatusWriter(spy, controller_name=OURS, clock=clock)


async def create(
    kube: client.ApiClient, plural: str, body: dict[str, Any], namespace: str | None
) -> dict[str, Any]:
    api = client.CustomObjectsApi(kube)
    if namespace is None:
        created: dict[str, Any] = await api.create_cluster_custom_object(GW, "v1", plural, body)
    else:
        created = await api.create_namespaced_custom_object(GW, "v1", namespace, plural, body)
    return created


async def get(kube: client.ApiClient, plural: str, name: str, namespace: str) -> dict[str, Any]:
    obj: dict[str, Any] = await client.CustomObjectsApi(kube).get_namespaced_custom_object(
        GW, "v1", namespace, plural, name
    )
    return obj


async def create_route(
    kube: client.ApiClient, namespace: str, *gateways: ObjectKey
) -> dict[str, Any]:
    parent_refs = [{"name": g.name, "namespace": g.namespace} for g in gateways]
    body = {
        "apiVersion": f"{GW}/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "route"},
        "spec": {"parentRefs": parent_refs},
    }
    return await create(kube, "httproutes", body, namespace)


async def put_other_controllers_entry(
    kube: client.ApiClient, namespace: str, gateway: ObjectKey
) -> dict[str, Any]:
    """Another implementation reports on the route, the way it would: a status PUT."""
    route = await get(kube, "httproutes", "route", namespace)
    entry = {
        "parentRef": {
            "group": GW,
            "kind": "Gateway",
            "namespace": gateway.namespace,
            "name": gateway.name,
        },
        "controllerName": OTHER,
        "conditions": [
            {
                "type": "Accepted",
                "status": "False",
                "reason": "NotAllowedByListeners",
                "message": "Not mine.",
                "observedGeneration": 1,
                "lastTransitionTime": "2023-01-01T00:00:00Z",
            }
        ],
    }
    route["status"] = {"parents": [*route.get("status", {}).get("parents", []), entry]}
    await client.CustomObjectsApi(kube).replace_namespaced_custom_object_status(
        GW, "v1", namespace, "httproutes", "route", route
    )
    return entry


def route_status(namespace: str, gateway: ObjectKey, *, accepted: Any = "True") -> RouteStatus:
    reason = "Accepted" if accepted == "True" else "NotAllowedByListeners"
    return RouteStatus(
        kind="HTTPRoute",
        namespace=namespace,
        name="route",
        gateway=gateway,
        parents=(
            RouteParentStatus(
                parent_ref=ParentReference(name=gateway.name, namespace=gateway.namespace),
                conditions=(
                    condition("Accepted", accepted, reason),
                    condition("ResolvedRefs", "True", "ResolvedRefs"),
                ),
            ),
        ),
    )


async def test_gateway_status_written_then_identical_write_makes_no_request(
    kube: client.ApiClient,
    namespace: str,
    writer: StatusWriter,
    spy: CountingApi,
    clock: FakeClock,
) -> None:
    body = {
        "apiVersion": f"{GW}/v1",
        "kind": "Gateway",
        "metadata": {"name": "gw"},
        "spec": {
            "gatewayClassName": "anything",
            "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
        },
    }
    created = await create(kube, "gateways", body, namespace)
    assert created["status"]["conditions"][0]["reason"] == "Pending"  # the CRD default
    desired = GatewayStatus(
        namespace=namespace,
        name="gw",
        conditions=(condition("Accepted"), condition("Programmed", "True", "Programmed")),
        listeners=(
            ListenerStatus(
                name="http",
                supported_kinds=(RouteGroupKind("HTTPRoute"), RouteGroupKind("GRPCRoute")),
                attached_routes=2,
                conditions=(
                    condition("Accepted"),
                    condition("ResolvedRefs", "True", "ResolvedRefs"),
                    condition("Programmed", "True", "Programmed"),
                    condition("Conflicted", "False", "NoConflicts"),
                ),
            ),
        ),
        addresses=(GatewayAddress("IPAddress", "10.1.2.3"),),
    )

    assert await writer.write(desired, created) is True
    assert spy.calls == [("PUT", f"/apis/{GW}/v1/namespaces/{namespace}/gateways/gw/status")]

    stored = await get(kube, "gateways", "gw", namespace)
    status = stored["status"]
    assert [(c["type"], c["status"], c["lastTransitionTime"]) for c in status["conditions"]] == [
        ("Accepted", "True", rfc3339(T1)),
        ("Programmed", "True", rfc3339(T1)),
    ]
    [http] = status["listeners"]
    assert http["attachedRoutes"] == 2
    assert [k["kind"] for k in http["supportedKinds"]] == ["HTTPRoute", "GRPCRoute"]
    assert {c["type"] for c in http["conditions"]} == {
        "Accepted",
        "ResolvedRefs",
        "Programmed",
        "Conflicted",
    }
    assert status["addresses"] == [{"type": "IPAddress", "value": "10.1.2.3"}]

    spy.calls.clear()
    clock.now += 3600
    assert await writer.write(desired, stored) is False
    assert spy.calls == [], "an unchanged status must not cost a request"
    assert await writer.write(desired) is False
    assert [method for method, _ in spy.calls] == ["GET"]
    again = await get(kube, "gateways", "gw", namespace)
    assert again["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"]


async def test_gateway_class_status_with_supported_features(
    kube: client.ApiClient, writer: StatusWriter
) -> None:
    name = f"agc-{uuid.uuid4().hex[:8]}"
    body = {
        "apiVersion": f"{GW}/v1",
        "kind": "GatewayClass",
        "metadata": {"name": name},
        "spec": {"controllerName": OURS},
    }
    await create(kube, "gatewayclasses", body, None)
    objects = client.CustomObjectsApi(kube)
    try:
        desired = GatewayClassStatus(
            name=name,
            conditions=(
                condition("Accepted"),
                condition("SupportedVersion", "True", "SupportedVersion"),
            ),
            supported_features=("HTTPRoute", "Gateway", "GRPCRoute"),
        )
        assert await writer.write(desired) is True
        stored = await objects.get_cluster_custom_object(GW, "v1", "gatewayclasses", name)
        assert stored["status"]["supportedFeatures"] == [
            {"name": "GRPCRoute"},
            {"name": "Gateway"},
            {"name": "HTTPRoute"},
        ]
        assert await writer.write(desired) is False
    finally:
        await objects.delete_cluster_custom_object(GW, "v1", "gatewayclasses", name)


async def test_route_entries_of_other_controllers_and_gateways_survive(
    kube: client.ApiClient, namespace: str, writer: StatusWriter
) -> None:
    gw_a = ObjectKey("Gateway", namespace, "a")
    gw_b = ObjectKey("Gateway", "infra", "b")
    await create_route(kube, namespace, gw_a, gw_b)
    theirs = await put_other_controllers_entry(kube, namespace, gw_a)

    assert await writer.write(route_status(namespace, gw_a)) is True
    assert await writer.write(route_status(namespace, gw_b)) is True
    parents = (await get(kube, "httproutes", "route", namespace))["status"]["parents"]
    assert parents[0] == theirs
    assert [(p["controllerName"], p["parentRef"]["name"]) for p in parents] == [
        (OTHER, "a"),
        (OURS, "a"),
        (OURS, "b"),
    ]

    # the route no longer attaches to a: only our entry for a goes
    assert await writer.write(RouteStatus("HTTPRoute", namespace, "route", gw_a, ())) is True
    parents = (await get(kube, "httproutes", "route", namespace))["status"]["parents"]
    assert [(p["controllerName"], p["parentRef"]["name"]) for p in parents] == [
        (OTHER, "a"),
        (OURS, "b"),
    ]
    assert parents[0] == theirs


async def test_conflict_is_retried_with_a_fresh_read_and_converges(
    kube: client.ApiClient, namespace: str, writer: StatusWriter, spy: CountingApi
) -> None:
    gw_a = ObjectKey("Gateway", namespace, "a")
    stale = await create_route(kube, namespace, gw_a)
    # another controller writes between our read (`stale`) and our write
    theirs = await put_other_controllers_entry(kube, namespace, gw_a)

    with capture_logs() as logs:
        assert await writer.write(route_status(namespace, gw_a), stale) is True

    assert [method for method, _ in spy.calls] == ["PUT", "GET", "PUT"]
    assert [e["event"] for e in logs] == ["status_conflict_retry", "status_written"]
    assert logs[-1]["attempt"] == 2
    stored = await get(kube, "httproutes", "route", namespace)
    assert stored["status"]["parents"][0] == theirs
    assert stored["status"]["parents"][1]["controllerName"] == OURS
    # converged: the same desired status is now a no-op
    assert await writer.write(route_status(namespace, gw_a), stored) is False


async def test_desired_older_than_stored_generation_is_not_written(
    kube: client.ApiClient, namespace: str, writer: StatusWriter, spy: CountingApi
) -> None:
    gw_a = ObjectKey("Gateway", namespace, "a")
    await create_route(kube, namespace, gw_a)
    # the generated client sends a JSON patch (application/json-patch+json)
    add_hostname = [{"op": "add", "path": "/spec/hostnames", "value": ["example.com"]}]
    bumped = await client.CustomObjectsApi(kube).patch_namespaced_custom_object(
        GW, "v1", namespace, "httproutes", "route", add_hostname
    )
    assert bumped["metadata"]["generation"] == 2

    with capture_logs() as logs, pytest.raises(StaleStatusError):
        await writer.write(route_status(namespace, gw_a))  # conditions at generation 1

    assert [method for method, _ in spy.calls] == ["GET"]
    assert [e["event"] for e in logs] == ["status_skipped_stale"]
    assert "status" not in await get(kube, "httproutes", "route", namespace)


async def test_missing_object_is_done(namespace: str, writer: StatusWriter) -> None:
    gone = ObjectKey("Gateway", namespace, "a")
    assert await writer.write(route_status(namespace, gone)) is False


async def test_backend_tls_policy_ancestors(
    kube: client.ApiClient, namespace: str, writer: StatusWriter
) -> None:
    body = {
        "apiVersion": f"{GW}/v1",
        "kind": "BackendTLSPolicy",
        "metadata": {"name": "policy"},
        "spec": {
            "targetRefs": [{"group": "", "kind": "Service", "name": "backend"}],
            "validation": {"hostname": "backend.example.com", "wellKnownCACertificates": "System"},
        },
    }
    await create(kube, "backendtlspolicies", body, namespace)
    gateway = ObjectKey("Gateway", namespace, "a")
    desired = PolicyStatus(
        kind="BackendTLSPolicy",
        namespace=namespace,
        name="policy",
        gateway=gateway,
        ancestors=(
            PolicyAncestorStatus(
                ancestor_ref=ParentReference(name="a", namespace=namespace),
                conditions=(
                    condition("Accepted"),
                    condition("ResolvedRefs", "True", "ResolvedRefs"),
                ),
            ),
        ),
    )
    assert await writer.write(desired) is True
    stored = await get(kube, "backendtlspolicies", "policy", namespace)
    [ancestor] = stored["status"]["ancestors"]
    assert ancestor["controllerName"] == OURS
    assert ancestor["ancestorRef"] == {
        "group": GW,
        "kind": "Gateway",
        "namespace": namespace,
        "name": "a",
    }
    assert await writer.write(desired, stored) is False
