"""ListenerSets end to end against a real kube-apiserver (memory provider): the
status written to a ListenerSet, to its Gateway and to a route through it, and
how they follow edits and a deletion."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from agc_controller.translate import TranslateSettings
from agc_controller.translate.settings import CORE_FEATURES
from devcluster import ControlPlane
from tests.integration.test_controller import (
    GW,
    Env,
    Running,
    condition,
    env,
    eventually,
    our_parents,
    start,
)

__all__ = ["env"]  # the fixture, shared with test_controller


@pytest.fixture
async def running(env: Env, control_plane: ControlPlane) -> AsyncIterator[Running]:
    r = await start(
        env,
        control_plane,
        translate_settings=TranslateSettings(
            controller_name=env.controller_name,
            supported_features=CORE_FEATURES | {"ListenerSet"},
        ),
    )
    yield r
    await r.shutdown()


async def apply_gateway(env: Env, allowed_from: str) -> None:
    body: dict[str, Any] = {
        "apiVersion": f"{GW}/v1",
        "kind": "Gateway",
        "metadata": {"name": "gw"},
        "spec": {
            "gatewayClassName": env.class_name,
            "allowedListeners": {"namespaces": {"from": allowed_from}},
            "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
        },
    }
    try:
        current = await env.get("gateways", "gw")
    except Exception:
        await env.create("gateways", body)
        return
    await env.patch("gateways", "gw", {"spec": body["spec"]})
    assert current["metadata"]["name"] == "gw"


def listener_set(hostname: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GW}/v1",
        "kind": "ListenerSet",
        "metadata": {"name": "ls"},
        "spec": {
            "parentRef": {"name": "gw"},
            "listeners": [
                {"name": "extra", "port": 8080, "protocol": "HTTP", "hostname": hostname}
            ],
        },
    }


async def test_listener_set_status_route_status_and_gateway_count(
    env: Env, running: Running
) -> None:
    await env.service()
    await apply_gateway(env, "Same")
    await env.create("listenersets", listener_set("a.example.com"))
    await env.create(
        "httproutes",
        {
            "apiVersion": f"{GW}/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "web"},
            "spec": {
                "parentRefs": [{"kind": "ListenerSet", "group": GW, "name": "ls"}],
                "rules": [{"backendRefs": [{"name": "web", "port": 80}]}],
            },
        },
    )

    async def attached() -> bool:
        ls = await env.get("listenersets", "ls")
        status = ls.get("status") or {}
        listeners = status.get("listeners") or []
        gw = await env.get("gateways", "gw")
        parents = our_parents(await env.get("httproutes", "web"), env.controller_name)
        return (
            condition(status.get("conditions"), "Accepted").get("reason") == "Accepted"
            and condition(status.get("conditions"), "Programmed").get("status") == "True"
            and [(x["name"], x["attachedRoutes"]) for x in listeners] == [("extra", 1)]
            and (gw.get("status") or {}).get("attachedListenerSets") == 1
            and len(parents) == 1
            and parents[0]["parentRef"]["kind"] == "ListenerSet"
            and condition(parents[0]["conditions"], "Accepted").get("status") == "True"
        )

    await eventually(attached)
    cls = await env.custom.get_cluster_custom_object(GW, "v1", "gatewayclasses", env.class_name)
    # the standard CRDs serve ListenerSet, so the class claims it
    assert {"name": "ListenerSet"} in cls["status"]["supportedFeatures"]

    # an edit: observedGeneration follows, and Accepted keeps its transition time
    ls = await env.get("listenersets", "ls")
    accepted = condition(ls["status"]["conditions"], "Accepted")
    edited = await env.patch("listenersets", "ls", {"spec": listener_set("b.example.com")["spec"]})
    generation = edited["metadata"]["generation"]
    assert generation > accepted["observedGeneration"]

    async def observed() -> bool:
        ls = await env.get("listenersets", "ls")
        conditions = (ls.get("status") or {}).get("conditions")
        listeners = (ls.get("status") or {}).get("listeners") or []
        return all(
            c["observedGeneration"] == generation
            for c in [*conditions, *(c for x in listeners for c in x["conditions"])]
        )

    await eventually(observed)
    ls = await env.get("listenersets", "ls")
    assert (
        condition(ls["status"]["conditions"], "Accepted")["lastTransitionTime"]
        == (accepted["lastTransitionTime"])
    )

    # the Gateway stops allowing ListenerSets: NotAllowed, and the route is not accepted there
    await apply_gateway(env, "None")

    async def refused() -> bool:
        ls = await env.get("listenersets", "ls")
        status = ls.get("status") or {}
        gw = await env.get("gateways", "gw")
        parents = our_parents(await env.get("httproutes", "web"), env.controller_name)
        return (
            condition(status.get("conditions"), "Accepted").get("reason") == "NotAllowed"
            and condition(status.get("conditions"), "Programmed").get("reason") == "NotAllowed"
            and not status.get("listeners")
            and (gw.get("status") or {}).get("attachedListenerSets") == 0
            and len(parents) == 1
            and condition(parents[0]["conditions"], "Accepted").get("reason")
            == "NotAllowedByListeners"
        )

    await eventually(refused)

    # the ListenerSet is deleted: our entry for it leaves the route's status
    await apply_gateway(env, "Same")
    await eventually(attached)
    await env.delete("listenersets", "ls")

    async def detached() -> bool:
        gw = await env.get("gateways", "gw")
        route = await env.get("httproutes", "web")
        return (gw.get("status") or {}).get("attachedListenerSets") == 0 and not our_parents(
            route, env.controller_name
        )

    await eventually(detached)
