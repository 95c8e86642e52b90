"""Our policy kinds in the controller layer: which Gateways a policy change reaches
(mapper), and what one Gateway's snapshot gathers of them (cache)."""

from __future__ import annotations

from typing import Any

import pytest

from agc_controller.controller.cache import Cache
from agc_controller.controller.mapper import Mapper
from agc_controller.core.keys import ObjectKey
from agc_controller.informers import Store

GW = "gateway.networking.k8s.io"
KIND = "RateLimitPolicy"


def gateway_key(name: str) -> ObjectKey:
    return ObjectKey("Gateway", "infra", name)


def policy(name: str, *targets: dict[str, Any], ancestors: tuple[str, ...] = ()) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "agc-controller.io/v1alpha1",
        "kind": KIND,
        "metadata": {"name": name, "namespace": "infra", "generation": 1},
        "spec": {
            "targetRefs": [{"group": GW, **t} for t in targets],
            "limit": {"requests": 1, "unit": "Second"},
        },
    }
    if ancestors:
        obj["status"] = {
            "ancestors": [
                {"ancestorRef": {"group": GW, "kind": "Gateway", "name": a}} for a in ancestors
            ]
        }
    return obj


def route(name: str, gateway: str, namespace: str = "infra") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace, "generation": 1},
        "spec": {
            "parentRefs": [{"name": gateway, "namespace": "infra"}],
            "rules": [{"backendRefs": [{"name": "svc", "port": 80}]}],
        },
    }


@pytest.fixture
def cache() -> Cache:
    cache = Cache.with_stores(
        {
            kind: Store()
            for kind in (
                "Gateway",
                "HTTPRoute",
                "GRPCRoute",
                "ListenerSet",
                "Service",
                KIND,
                "HealthCheckPolicy",
                "AuthPolicy",
                "Secret",
                "ReferenceGrant",
            )
        }
    )
    for name in ("a", "b", "c"):
        cache.store("Gateway").upsert(
            {
                "metadata": {"name": name, "namespace": "infra", "generation": 1},
                "spec": {"gatewayClassName": "agc", "listeners": []},
            }
        )
    cache.store("HTTPRoute").upsert(route("web", "a"))
    cache.store("GRPCRoute").upsert(route("rpc", "b"))
    return cache


def keys(cache: Cache, obj: dict[str, Any]) -> set[ObjectKey]:
    return Mapper(cache=cache, enqueue=lambda _key: None).keys_for(KIND, obj)


def test_a_policy_reaches_the_gateways_it_targets_and_those_of_its_routes(cache: Cache) -> None:
    assert keys(cache, policy("p", {"kind": "Gateway", "name": "c", "sectionName": "x"})) == {
        gateway_key("c")
    }
    assert keys(cache, policy("p", {"kind": "HTTPRoute", "name": "web"})) == {gateway_key("a")}
    assert keys(
        cache, policy("p", {"kind": "GRPCRoute", "name": "rpc"}, {"kind": "Gateway", "name": "c"})
    ) == {gateway_key("b"), gateway_key("c")}
    # a route not cached leads nowhere (its creation will); the ancestors in status
    # lead to the Gateways whose entries may have to go
    assert keys(cache, policy("p", {"kind": "HTTPRoute", "name": "gone"})) == set()
    assert keys(
        cache, policy("p", {"kind": "HTTPRoute", "name": "gone"}, ancestors=("a", "c"))
    ) == {gateway_key("a"), gateway_key("c")}


def test_a_policy_on_a_service_reaches_the_gateways_of_routes_sending_to_it(
    cache: Cache,
) -> None:
    health = {
        "metadata": {"name": "h", "namespace": "infra", "generation": 1},
        "spec": {"targetRefs": [{"group": "", "kind": "Service", "name": "svc"}]},
    }
    mapper = Mapper(cache=cache, enqueue=lambda _key: None)
    assert mapper.keys_for("HealthCheckPolicy", health) == {gateway_key("a"), gateway_key("b")}
    cache.store("HealthCheckPolicy").upsert(health)
    assert list(cache.snapshot_for_gateway(gateway_key("a")).health_check_policies) == ["infra/h"]
    assert cache.snapshot_for_gateway(gateway_key("c")).health_check_policies == {}


def test_an_auth_policys_secret_reaches_the_gateway_and_its_snapshot(cache: Cache) -> None:
    policy = {
        "metadata": {"name": "guard", "namespace": "infra", "generation": 1},
        "spec": {
            "targetRefs": [{"group": GW, "kind": "Gateway", "name": "c"}],
            "apiKey": {"secretRefs": [{"name": "keys"}]},
            "basic": {"secretRef": {"name": "users", "namespace": "vault"}},
        },
    }
    cache.store("AuthPolicy").upsert(policy)
    cache.store("Secret").upsert({"metadata": {"name": "keys", "namespace": "infra"}, "data": {}})
    mapper = Mapper(cache=cache, enqueue=lambda _key: None)
    keys_secret = {"metadata": {"name": "keys", "namespace": "infra"}}
    assert mapper.keys_for("Secret", keys_secret) == {gateway_key("c")}
    assert mapper.keys_for("Secret", {"metadata": {"name": "users", "namespace": "vault"}}) == {
        gateway_key("c")
    }
    grant = {
        "metadata": {"name": "g", "namespace": "vault"},
        "spec": {
            "from": [{"group": "agc-controller.io", "kind": "AuthPolicy", "namespace": "infra"}]
        },
    }
    assert mapper.keys_for("ReferenceGrant", grant) == {gateway_key("c")}
    snapshot = cache.snapshot_for_gateway(gateway_key("c"))
    assert list(snapshot.auth_policies) == ["infra/guard"]
    assert list(snapshot.secrets) == ["infra/keys"]


def test_an_update_reaches_the_gateways_before_and_after(cache: Cache) -> None:
    enqueued: list[ObjectKey] = []
    mapper = Mapper(cache=cache, enqueue=enqueued.append)
    moved = policy("p", {"kind": "Gateway", "name": "c"})
    moved["metadata"]["generation"] = 2
    mapper.handler(KIND).on_update(policy("p", {"kind": "HTTPRoute", "name": "web"}), moved)
    assert sorted(enqueued, key=str) == [gateway_key("a"), gateway_key("c")]


def test_a_status_only_update_reaches_nothing(cache: Cache) -> None:
    enqueued: list[ObjectKey] = []
    mapper = Mapper(cache=cache, enqueue=enqueued.append)
    before = policy("p", {"kind": "Gateway", "name": "c"})
    mapper.handler(KIND).on_update(before, {**before, "status": {"ancestors": []}})
    assert enqueued == []


def test_the_snapshot_gathers_the_policies_that_reach_the_gateway(cache: Cache) -> None:
    store = cache.store(KIND)
    store.upsert(policy("on-gateway", {"kind": "Gateway", "name": "a"}))
    store.upsert(policy("on-route", {"kind": "HTTPRoute", "name": "web"}))
    store.upsert(policy("stale-entry", {"kind": "Gateway", "name": "c"}, ancestors=("a",)))
    store.upsert(policy("elsewhere", {"kind": "GRPCRoute", "name": "rpc"}))
    snapshot = cache.snapshot_for_gateway(gateway_key("a"))
    assert sorted(snapshot.rate_limit_policies) == [
        "infra/on-gateway",
        "infra/on-route",
        "infra/stale-entry",
    ]
    assert sorted(cache.snapshot_for_gateway(gateway_key("b")).rate_limit_policies) == [
        "infra/elsewhere"
    ]
