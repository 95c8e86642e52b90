"""Ingress against a real kube-apiserver: our IngressClass's Ingresses are translated
into one derived Gateway, programmed (memory provider), and reported back on each
Ingress as `status.loadBalancer` and Events."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from agc_controller.providers.memory import MemoryProvider
from agc_controller.translate import TranslateSettings
from agc_controller.translate.ingress import SERVED_NAMESPACE
from devcluster import ControlPlane
from tests.integration.test_controller import Env, Running, eventually, start
from tests.integration.test_controller import env as env  # noqa: PLC0414 (the fixture)

SNIPPET = "nginx.ingress.kubernetes.io/configuration-snippet"


class Ingresses:
    def __init__(self, kube: client.ApiClient, namespace: str, class_name: str) -> None:
        self.networking = client.NetworkingV1Api(kube)
        self.events = client.EventsV1Api(kube)
        self.namespace = namespace
        self.class_name = class_name

    async def create(
        self,
        name: str,
        paths: list[tuple[str, str]],
        *,
        host: str = "shop.example.com",
        annotations: dict[str, str] | None = None,
        class_name: str | None = "",
    ) -> None:
        """An Ingress for `host` with a Prefix path per (path, Service) in `paths`.
        `class_name` "" is this test's class; None names no class."""
        spec: dict[str, Any] = {
            "rules": [
                {
                    "host": host,
                    "http": {
                        "paths": [
                            {
                                "path": path,
                                "pathType": "Prefix",
                                "backend": {"service": {"name": svc, "port": {"number": 80}}},
                            }
                            for path, svc in paths
                        ]
                    },
                }
            ]
        }
        if class_name is not None:
            spec["ingressClassName"] = class_name or self.class_name
        await self.networking.create_namespaced_ingress(
            self.namespace,
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "metadata": {"name": name, "annotations": annotations or {}},
                "spec": spec,
            },
        )

    async def status(self, name: str) -> list[dict[str, Any]]:
        ingress = await self.networking.read_namespaced_ingress(name, self.namespace)
        lb = ingress.status.load_balancer if ingress.status else None
        return [{"ip": i.ip} for i in (lb.ingress or [])] if lb else []

    async def reasons(self, name: str) -> set[tuple[str, str]]:
        """(type, reason) of the Events on Ingress `name`."""
        events = await self.events.list_namespaced_event(self.namespace)
        return {
            (e.type, e.reason)
            for e in events.items
            if e.regarding and e.regarding.kind == "Ingress" and e.regarding.name == name
        }

    async def notes(self, name: str, reason: str) -> list[str]:
        events = await self.events.list_namespaced_event(self.namespace)
        return [
            e.note or ""
            for e in events.items
            if e.regarding and e.regarding.name == name and e.reason == reason
        ]


@pytest.fixture
async def ingresses(env: Env) -> AsyncIterator[Ingresses]:
    name = f"agc-ingress-{uuid.uuid4().hex[:8]}"
    api = client.NetworkingV1Api(env.kube)
    await api.create_ingress_class(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "IngressClass",
            "metadata": {"name": name},
            "spec": {"controller": ingress_controller(env)},
        }
    )
    yield Ingresses(env.kube, env.namespace, name)
    try:
        await api.delete_ingress_class(name)
    except ApiException as e:
        if e.status != 404:
            raise


def ingress_controller(env: Env) -> str:
    return env.controller_name.replace("/test-", "/ingress-")


@pytest.fixture
def memory() -> MemoryProvider:
    return MemoryProvider()


@pytest.fixture
async def running(
    env: Env, control_plane: ControlPlane, memory: MemoryProvider
) -> AsyncIterator[Running]:
    settings = TranslateSettings(
        controller_name=env.controller_name, ingress_controller=ingress_controller(env)
    )
    r = await start(env, control_plane, memory, translate_settings=settings)
    yield r
    await r.shutdown()


def served_paths(memory: MemoryProvider, class_name: str) -> set[str]:
    """The path values the derived Gateway's model routes, over all its hosts."""
    model = next(
        (
            m
            for k, m in memory.models.items()
            if k.namespace == SERVED_NAMESPACE and k.name == class_name
        ),
        None,
    )
    if model is None:
        return set()
    return {rule.match.path.value for host in model.hosts for rule in host.rules}


async def test_ingress_gets_an_address_events_and_a_model(
    env: Env, ingresses: Ingresses, running: Running, memory: MemoryProvider
) -> None:
    await env.service("web")
    await ingresses.create("shop", [("/api", "web")])

    async def addressed() -> bool:
        return bool(await ingresses.status("shop"))

    await eventually(addressed)
    assert served_paths(memory, ingresses.class_name) == {"/api"}

    async def announced() -> bool:
        return ("Normal", "Programmed") in await ingresses.reasons("shop")

    await eventually(announced)

    # a second Ingress for the same host and path: the older one keeps it
    await ingresses.create("shop-copy", [("/api", "web"), ("/cart", "web")])

    async def conflicted() -> bool:
        return ("Warning", "PathConflict") in await ingresses.reasons("shop-copy")

    await eventually(conflicted)
    assert served_paths(memory, ingresses.class_name) == {"/api", "/cart"}
    (note,) = await ingresses.notes("shop-copy", "PathConflict")
    assert f"older Ingress {env.namespace}/shop" in note


async def test_snippets_are_refused_and_other_classes_ignored(
    env: Env, ingresses: Ingresses, running: Running, memory: MemoryProvider
) -> None:
    await env.service("web")
    await ingresses.create("sneaky", [("/", "web")], annotations={SNIPPET: "return 200 'owned';"})
    await ingresses.create("theirs", [("/theirs", "web")], class_name="someone-else")

    async def refused() -> bool:
        return ("Warning", "AnnotationRefused") in await ingresses.reasons("sneaky")

    await eventually(refused)
    (note,) = await ingresses.notes("sneaky", "AnnotationRefused")
    assert SNIPPET in note
    assert "not served" in note
    # served as a 500 (a rule without backends), never with the snippet
    model = next(m for k, m in memory.models.items() if k.name == ingresses.class_name)
    rules = [rule for host in model.hosts for rule in host.rules]
    assert rules
    assert all(not rule.backends for rule in rules)
    assert await ingresses.status("theirs") == []
    assert await ingresses.reasons("theirs") == set()


async def test_ingress_without_a_class_belongs_to_the_default_class(
    env: Env, ingresses: Ingresses, running: Running, memory: MemoryProvider
) -> None:
    await env.service("web")
    await ingresses.create("classless", [("/plain", "web")], class_name=None)
    api = client.NetworkingV1Api(env.kube)
    # not ours until our class is the default
    await ingresses.create("marker", [("/marker", "web")])

    async def marker_served() -> bool:
        return "/marker" in served_paths(memory, ingresses.class_name)

    await eventually(marker_served)
    assert "/plain" not in served_paths(memory, ingresses.class_name)
    await api.patch_ingress_class(
        ingresses.class_name,
        {"metadata": {"annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}}},
    )

    async def plain_served() -> bool:
        return "/plain" in served_paths(memory, ingresses.class_name)

    await eventually(plain_served)

    async def classless_status() -> bool:
        # written after the data plane took it: a moment after it is served
        return bool(await ingresses.status("classless"))

    await eventually(classless_status)


async def test_deleting_the_class_removes_its_gateway(
    env: Env, ingresses: Ingresses, running: Running, memory: MemoryProvider
) -> None:
    await env.service("web")
    await ingresses.create("shop", [("/", "web")])

    async def served() -> bool:
        return bool(served_paths(memory, ingresses.class_name))

    await eventually(served)
    await client.NetworkingV1Api(env.kube).delete_ingress_class(ingresses.class_name)

    async def removed() -> bool:
        return not any(k.name == ingresses.class_name for k in memory.models)

    await eventually(removed)
