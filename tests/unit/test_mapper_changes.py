"""Handlers enqueue an update only when it changes what translation reads."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from agc_controller.controller.cache import Cache
from agc_controller.controller.mapper import Mapper, data_plane_key
from agc_controller.core.keys import ObjectKey
from agc_controller.informers import Store
from agc_controller.translate.ingress import ingress_gateway_key

GATEWAY = ObjectKey("Gateway", "ns", "gw")


def _route() -> dict[str, Any]:
    return {
        "metadata": {"name": "r", "namespace": "ns", "generation": 1, "resourceVersion": "1"},
        "spec": {
            "parentRefs": [{"name": "gw"}],
            "rules": [{"backendRefs": [{"name": "svc", "port": 80}]}],
        },
    }


def _service() -> dict[str, Any]:
    return {
        "metadata": {"name": "svc", "namespace": "ns", "resourceVersion": "1"},
        "spec": {"ports": [{"port": 80}]},
        "status": {"loadBalancer": {}},
    }


@pytest.fixture
def setup() -> tuple[Mapper, list[ObjectKey], Cache]:
    cache = Cache.with_stores({"HTTPRoute": Store(), "Service": Store()})
    cache.store("HTTPRoute").upsert(_route())
    cache.store("Service").upsert(_service())
    enqueued: list[ObjectKey] = []
    return Mapper(cache=cache, enqueue=enqueued.append), enqueued, cache


def _changed(obj: dict[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    new = copy.deepcopy(obj)
    new["metadata"]["resourceVersion"] = "2"
    target = new
    for part in path[:-1]:
        target = target.setdefault(part, {})
    target[path[-1]] = value
    return new


@pytest.mark.parametrize(
    ("path", "value", "enqueues"),
    [
        # our own status write coming back: no reconcile
        (["status"], {"parents": [{"controllerName": "x", "parentRef": {"name": "gw"}}]}, False),
        # a resync / relist delivering the same object
        (["metadata", "resourceVersion"], "2", False),
        (["metadata", "generation"], 2, True),
        (["metadata", "labels"], {"team": "a"}, True),
        (["metadata", "annotations"], {"a": "b"}, True),
    ],
)
def test_route_updates(
    setup: tuple[Mapper, list[ObjectKey], Cache], path: list[str], value: Any, enqueues: bool
) -> None:
    mapper, enqueued, _ = setup
    old = _route()
    mapper.handler("HTTPRoute").on_update(old, _changed(old, path, value))
    assert enqueued == ([GATEWAY] if enqueues else [])


@pytest.mark.parametrize(
    ("path", "value", "enqueues"),
    [
        (["status", "loadBalancer"], {"ingress": [{"ip": "192.0.2.1"}]}, False),
        (["spec", "ports"], [{"port": 81}], True),
        (["metadata", "labels"], {"app": "x"}, True),
    ],
)
def test_service_updates(
    setup: tuple[Mapper, list[ObjectKey], Cache], path: list[str], value: Any, enqueues: bool
) -> None:
    mapper, enqueued, _ = setup
    old = _service()
    mapper.handler("Service").on_update(old, _changed(old, path, value))
    assert enqueued == ([GATEWAY] if enqueues else [])


def test_adds_and_deletes_always_enqueue(setup: tuple[Mapper, list[ObjectKey], Cache]) -> None:
    mapper, enqueued, _ = setup
    mapper.handler("HTTPRoute").on_add(_route())
    mapper.handler("HTTPRoute").on_delete(_route())
    assert enqueued == [GATEWAY, GATEWAY]


def test_a_providers_gateway_is_reconciled_by_its_own_key_or_its_ingress_class() -> None:
    """A provider re-queues the Gateway it programs; the one an IngressClass's
    Ingresses are served as exists in translation only, and its IngressClass's key
    programs it (reconciling a Gateway key that names no Gateway deletes its data plane)."""
    assert data_plane_key(GATEWAY) == GATEWAY
    assert data_plane_key(ingress_gateway_key("agc")) == ObjectKey("IngressClass", "", "agc")
