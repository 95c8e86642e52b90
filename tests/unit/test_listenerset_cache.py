"""ListenerSets in the controller layer: which Gateway a change reaches (mapper), what
one Gateway's snapshot gathers (cache), and the feature claimed only when served."""

from __future__ import annotations

from typing import Any

import pytest

from agc_controller.controller.cache import Cache
from agc_controller.controller.mapper import Mapper
from agc_controller.core.keys import ObjectKey
from agc_controller.informers import Store
from agc_controller.manager import unserved_resource_features
from agc_controller.translate import TranslateSettings, translate_gateway
from agc_controller.translate.settings import CORE_FEATURES

GW = "gateway.networking.k8s.io"
GATEWAY = ObjectKey("Gateway", "infra", "gw")
OTHER_GATEWAY = ObjectKey("Gateway", "infra", "other")
KINDS = (
    "GatewayClass",
    "Gateway",
    "HTTPRoute",
    "GRPCRoute",
    "TLSRoute",
    "ListenerSet",
    "Service",
    "Secret",
    "ReferenceGrant",
    "Namespace",
)


def listener_set(name: str, gateway: str = "gw", **listener: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GW}/v1",
        "kind": "ListenerSet",
        "metadata": {
            "name": name,
            "namespace": "apps",
            "generation": 1,
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {
            "parentRef": {"name": gateway, "namespace": "infra"},
            "listeners": [{"name": "l", "port": 8080, "protocol": "HTTP", **listener}],
        },
    }


def route(name: str, *parent_refs: dict[str, Any], status: list[Any] | None = None) -> Any:
    obj: dict[str, Any] = {
        "apiVersion": f"{GW}/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": "apps", "generation": 1},
        "spec": {
            "parentRefs": list(parent_refs),
            "rules": [{"backendRefs": [{"name": "svc", "port": 80}]}],
        },
    }
    if status is not None:
        obj["status"] = {"parents": status}
    return obj


def ls_ref(name: str) -> dict[str, Any]:
    return {"group": GW, "kind": "ListenerSet", "name": name}


@pytest.fixture
def cache() -> Cache:
    cache = Cache.with_stores({kind: Store() for kind in KINDS})
    cache.store("GatewayClass").upsert(
        {
            "metadata": {"name": "agc", "generation": 1},
            "spec": {"controllerName": "agc-controller.io/gateway-controller"},
        }
    )
    for name in ("gw", "other"):
        cache.store("Gateway").upsert(
            {
                "metadata": {"name": name, "namespace": "infra", "generation": 1},
                "spec": {
                    "gatewayClassName": "agc",
                    "allowedListeners": {"namespaces": {"from": "All"}},
                    "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
                },
            }
        )
    return cache


def keys(cache: Cache, kind: str, obj: dict[str, Any]) -> set[ObjectKey]:
    return Mapper(cache=cache, enqueue=lambda _key: None).keys_for(kind, obj)


def test_a_listener_set_change_reaches_the_gateway_it_names(cache: Cache) -> None:
    enqueued: list[ObjectKey] = []
    mapper = Mapper(cache=cache, enqueue=enqueued.append)
    moved = listener_set("ls", gateway="other")
    moved["metadata"]["generation"] = 2
    mapper.handler("ListenerSet").on_update(listener_set("ls"), moved)
    # the Gateway it left and the one it joins
    assert enqueued == [GATEWAY, OTHER_GATEWAY]


def test_a_route_through_a_listener_set_reaches_its_gateway(cache: Cache) -> None:
    cache.store("ListenerSet").upsert(listener_set("ls"))
    assert keys(cache, "HTTPRoute", route("r", ls_ref("ls"))) == {GATEWAY}
    # a ListenerSet not in the cache leads nowhere (its creation will)
    assert keys(cache, "HTTPRoute", route("r", ls_ref("missing"))) == set()


def test_a_backend_of_a_route_through_a_listener_set_reaches_its_gateway(cache: Cache) -> None:
    cache.store("ListenerSet").upsert(listener_set("ls"))
    cache.store("HTTPRoute").upsert(route("r", ls_ref("ls")))
    service = {"metadata": {"name": "svc", "namespace": "apps"}, "spec": {}}
    assert keys(cache, "Service", service) == {GATEWAY}


def test_certificates_and_grants_of_a_listener_set_reach_its_gateway(cache: Cache) -> None:
    cache.store("ListenerSet").upsert(
        listener_set(
            "ls",
            protocol="HTTPS",
            tls={"certificateRefs": [{"name": "cert", "namespace": "certs"}]},
        )
    )
    secret = {"metadata": {"name": "cert", "namespace": "certs"}, "type": "kubernetes.io/tls"}
    assert keys(cache, "Secret", secret) == {GATEWAY}
    grant = {
        "metadata": {"name": "g", "namespace": "certs"},
        "spec": {
            "from": [{"group": GW, "kind": "ListenerSet", "namespace": "apps"}],
            "to": [{"group": "", "kind": "Secret"}],
        },
    }
    assert keys(cache, "ReferenceGrant", grant) == {GATEWAY}


def test_the_snapshot_gathers_listener_sets_their_routes_and_certificates(cache: Cache) -> None:
    cache.store("ListenerSet").upsert(
        listener_set("ls", protocol="HTTPS", tls={"certificateRefs": [{"name": "cert"}]}, port=443)
    )
    cache.store("ListenerSet").upsert(listener_set("elsewhere", gateway="other"))
    cache.store("Secret").upsert({"metadata": {"name": "cert", "namespace": "apps"}})
    cache.store("HTTPRoute").upsert(route("via-ls", ls_ref("ls"), ls_ref("elsewhere")))
    cache.store("HTTPRoute").upsert(route("only-elsewhere", ls_ref("elsewhere")))
    snapshot = cache.snapshot_for_gateway(GATEWAY)
    assert set(snapshot.http_routes) == {"apps/via-ls"}
    # the ListenerSet naming the Gateway, and the one its route also names (so that
    # translation can tell whose that route's entries are)
    assert set(snapshot.listener_sets) == {"apps/ls", "apps/elsewhere"}
    assert set(snapshot.secrets) == {"apps/cert"}
    other = cache.snapshot_for_gateway(OTHER_GATEWAY)
    assert set(other.http_routes) == {"apps/via-ls", "apps/only-elsewhere"}


def test_entries_for_a_deleted_listener_set_are_removed(cache: Cache) -> None:
    """The ListenerSet is gone from the cache; its route's status still has our entry.
    The Gateway's next snapshot has the route, and its translation removes the entry."""
    ours = {
        "parentRef": ls_ref("gone"),
        "controllerName": "agc-controller.io/gateway-controller",
        "conditions": [],
    }
    cache.store("HTTPRoute").upsert(route("r", ls_ref("gone"), status=[ours]))
    snapshot = cache.snapshot_for_gateway(GATEWAY)
    assert set(snapshot.http_routes) == {"apps/r"}
    translation = translate_gateway(snapshot, "infra/gw", TranslateSettings())
    (status,) = translation.route_statuses
    assert status.parents == ()
    assert status.listener_sets == (ObjectKey("ListenerSet", "apps", "gone"),)


def test_listener_set_claimed_only_where_its_resource_is_served() -> None:
    features = CORE_FEATURES | {"ListenerSet"}
    served = {f"{GW}/v1": {"gateways", "httproutes", "listenersets"}}
    assert unserved_resource_features(features, served) == set()
    assert unserved_resource_features(features, {f"{GW}/v1": {"gateways"}}) == {"ListenerSet"}
    assert unserved_resource_features(CORE_FEATURES, {}) == set()
