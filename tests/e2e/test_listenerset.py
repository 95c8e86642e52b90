"""A ListenerSet from another namespace adds a listener on a new port to a Gateway
that serves a non-retrying keep-alive load on its own listener: the new port
serves its routes, and the load sees no failed request."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes_asyncio import client

from devcluster.netns import BackendNamespace
from tests.conftest import new_namespace
from tests.e2e.conftest import GW, Cluster
from tests.e2e.load import Load
from tests.e2e.test_http_routing import HTTP, eventually_status


@pytest.fixture
async def team_namespace(kube: client.ApiClient) -> AsyncIterator[str]:
    """The other team's namespace, where the ListenerSet and its route live."""
    async with new_namespace(kube, "team") as name:
        yield name


async def listener_set_serving(
    cluster: Cluster, namespace: str, name: str, routes: int
) -> dict[str, Any]:
    """The ListenerSet once Programmed at its generation with `routes` attached."""
    async with asyncio.timeout(30):
        while True:
            ls = await cluster.custom.get_namespaced_custom_object(
                GW, "v1", namespace, "listenersets", name
            )
            generation = ls["metadata"]["generation"]
            status = ls.get("status") or {}
            if any(
                c["type"] == "Programmed"
                and c["status"] == "True"
                and c["observedGeneration"] == generation
                for c in status.get("conditions") or []
            ) and [x["attachedRoutes"] for x in status.get("listeners") or []] == [routes]:
                return dict(ls)
            await asyncio.sleep(0.05)


async def test_a_listener_set_adds_a_port_under_load(
    cluster: Cluster, backends: BackendNamespace, team_namespace: str
) -> None:
    gateway_backend = backends.start_echo("gateway-own")
    team_backend = backends.start_echo("team")
    await cluster.service("own", [gateway_backend])
    address = await cluster.gateway("gw", HTTP, allowedListeners={"namespaces": {"from": "All"}})
    await cluster.route(
        "own",
        {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [{"name": "own", "port": 80}]}]},
    )
    _, _, body = await eventually_status(address, "/", 200)
    assert body["name"] == "gateway-own"
    team = Cluster(
        kube=cluster.kube,
        namespace=team_namespace,
        class_name=cluster.class_name,
        provider=cluster.provider,
    )
    await team.service("team", [team_backend])

    async with Load(f"http://{address}/", seconds=8) as load:
        await asyncio.sleep(1)
        await team.apply(
            {
                "apiVersion": f"{GW}/v1",
                "kind": "ListenerSet",
                "metadata": {"name": "team"},
                "spec": {
                    "parentRef": {"name": "gw", "namespace": cluster.namespace},
                    "listeners": [{"name": "extra", "port": 8081, "protocol": "HTTP"}],
                },
            }
        )
        await team.route(
            "team",
            {
                "parentRefs": [{"kind": "ListenerSet", "group": GW, "name": "team"}],
                "rules": [{"backendRefs": [{"name": "team", "port": 80}]}],
            },
        )
        ls = await listener_set_serving(team, team_namespace, "team", routes=1)
        _, _, body = await eventually_status(address, "/", 200, port=8081)
        assert body["name"] == "team"
    assert [x["name"] for x in ls["status"]["listeners"]] == ["extra"]
    # the Gateway's own listener still serves its own route only
    _, _, body = await eventually_status(address, "/", 200)
    assert body["name"] == "gateway-own"
    assert load.result is not None
    assert load.result.requests > 1000, load.result.output
    assert load.result.failed == 0, load.result.output
