"""e2e fixtures: backends in a network namespace, and the controller with the
local provider running against the session's real kube-apiserver."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from kubernetes_asyncio import client

from agc_controller.core.resources import BY_KIND, POLICY_GROUP
from agc_controller.factory import Mesh
from agc_controller.kube import api_client_from_kubeconfig, server_side_apply
from agc_controller.manager import Controller
from agc_controller.providers.local import LocalProvider
from agc_controller.providers.local.capabilities import local_translate_settings
from agc_controller.settings import Settings
from devcluster import ControlPlane
from devcluster.netns import BackendNamespace

GW = "gateway.networking.k8s.io"
POLICY_VERSION = "v1alpha1"


@pytest.fixture(scope="session")
def backends() -> Iterator[BackendNamespace]:
    ns = BackendNamespace.for_process()
    try:
        yield ns
    finally:
        ns.destroy()


async def create_gateway_class(kube: client.ApiClient, name: str, controller_name: str) -> None:
    await client.CustomObjectsApi(kube).create_cluster_custom_object(
        GW,
        "v1",
        "gatewayclasses",
        {
            "apiVersion": f"{GW}/v1",
            "kind": "GatewayClass",
            "metadata": {"name": name},
            "spec": {"controllerName": controller_name},
        },
    )


async def gateway_with_backend(
    kube: client.ApiClient,
    namespace: str,
    backends: BackendNamespace,
    *,
    controller_name: str,
    class_name: str,
    backend_name: str,
    port: int = 80,
) -> None:
    """For tests that run the controller as a process: a GatewayClass, Gateway "gw"
    with an HTTP listener on `port`, and an echo backend behind Service `svc` (port 80)."""
    await create_gateway_class(kube, class_name, controller_name)
    backend = backends.start_echo(backend_name)
    await client.CoreV1Api(kube).create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "svc"},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        },
    )
    await client.DiscoveryV1Api(kube).create_namespaced_endpoint_slice(
        namespace,
        {
            "metadata": {"name": "svc-1", "labels": {"kubernetes.io/service-name": "svc"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": [{"addresses": [backend], "conditions": {"ready": True}}],
        },
    )
    await client.CustomObjectsApi(kube).create_namespaced_custom_object(
        GW,
        "v1",
        namespace,
        "gateways",
        {
            "apiVersion": f"{GW}/v1",
            "kind": "Gateway",
            "metadata": {"name": "gw"},
            "spec": {
                "gatewayClassName": class_name,
                "listeners": [{"name": "http", "port": port, "protocol": "HTTP"}],
            },
        },
    )


@pytest.fixture
def dataplane_dir() -> Iterator[Path]:
    """A state directory for the local data plane that NGINX workers (user nobody
    when the tests run as root) can reach: pytest's own temporary directories are
    private to their owner."""
    path = Path(tempfile.mkdtemp(prefix="agc-dataplane-"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@attrs.define
class Cluster:
    """Create objects in the test namespace, and wait for Gateways to be served."""

    kube: client.ApiClient
    namespace: str
    class_name: str
    provider: LocalProvider
    # IngressClasses naming this spec.controller are this controller's
    ingress_controller: str = ""
    # mesh mTLS: the gateway's identity and the checks on mesh endpoints
    mesh: Mesh | None = None

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.kube)

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        obj = {**obj, "metadata": {"namespace": self.namespace, **obj["metadata"]}}
        plural = BY_KIND[obj["kind"]].plural
        return await server_side_apply(self.kube, obj, plural=plural)

    async def service(
        self,
        name: str,
        addresses: list[str],
        *,
        port: int = 80,
        target_port: int = 8080,
        app_protocol: str | None = None,
    ) -> None:
        """A selectorless Service with a hand-made EndpointSlice (backends are not pods)."""
        service_port: dict[str, Any] = {"name": "http", "port": port, "targetPort": target_port}
        if app_protocol:
            service_port["appProtocol"] = app_protocol
        await self.apply(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name},
                "spec": {"ports": [service_port]},
            }
        )
        await self.endpoints(name, addresses, target_port=target_port)

    async def endpoints(
        self, service: str, addresses: list[str], *, target_port: int = 8080
    ) -> None:
        await self.apply(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"{service}-manual",
                    "labels": {"kubernetes.io/service-name": service},
                },
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": target_port}],
                "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in addresses],
            }
        )

    async def gateway(self, name: str, listeners: list[dict[str, Any]], **spec: Any) -> str:
        """Apply a Gateway and return its address once this generation is Programmed."""
        gw = await self.apply(
            {
                "apiVersion": f"{GW}/v1",
                "kind": "Gateway",
                "metadata": {"name": name},
                "spec": {"gatewayClassName": self.class_name, "listeners": listeners, **spec},
            }
        )
        await self.wait_observed(name, int(gw["metadata"]["generation"]))
        gw = await self.custom.get_namespaced_custom_object(
            GW, "v1", self.namespace, "gateways", name
        )
        return str(gw["status"]["addresses"][0]["value"])

    async def apply_gateway(self, name: str, listeners: list[dict[str, Any]]) -> int:
        """Apply a Gateway and return its new generation (no waiting)."""
        gw = await self.apply(
            {
                "apiVersion": f"{GW}/v1",
                "kind": "Gateway",
                "metadata": {"name": name},
                "spec": {"gatewayClassName": self.class_name, "listeners": listeners},
            }
        )
        return int(gw["metadata"]["generation"])

    async def wait_observed(self, gateway: str, generation: int) -> None:
        """Until the Gateway is Programmed at `generation` (so the data plane has it)."""
        async with asyncio.timeout(30):
            while True:
                gw = await self.custom.get_namespaced_custom_object(
                    GW, "v1", self.namespace, "gateways", gateway
                )
                conditions = (gw.get("status") or {}).get("conditions") or []
                if any(
                    c["type"] == "Programmed"
                    and c["status"] == "True"
                    and c["observedGeneration"] == generation
                    for c in conditions
                ):
                    return
                await asyncio.sleep(0.02)

    async def policy(self, kind: str, name: str, spec: dict[str, Any]) -> None:
        """Apply one of our policies (group agc-controller.io)."""
        await self.apply(
            {
                "apiVersion": f"{POLICY_GROUP}/{POLICY_VERSION}",
                "kind": kind,
                "metadata": {"name": name},
                "spec": spec,
            }
        )

    async def policy_accepted(self, kind: str, name: str) -> dict[str, Any]:
        """One of our policies once our ancestor entry says Accepted=True."""
        async with asyncio.timeout(20):
            while True:
                obj = await self.custom.get_namespaced_custom_object(
                    POLICY_GROUP, POLICY_VERSION, self.namespace, BY_KIND[kind].plural, name
                )
                for ancestor in (obj.get("status") or {}).get("ancestors") or []:
                    for condition in ancestor["conditions"]:
                        if condition["type"] == "Accepted" and condition["status"] == "True":
                            return obj
                await asyncio.sleep(0.05)

    async def delete_policy(self, kind: str, name: str) -> None:
        await self.custom.delete_namespaced_custom_object(
            POLICY_GROUP, POLICY_VERSION, self.namespace, BY_KIND[kind].plural, name
        )

    async def prefix_route(self, name: str, rule: str, backend: str, *, rest: str | None) -> None:
        """HTTPRoute `name` on Gateway "gw": rule `rule` for paths under /`rule`, and a
        catch-all rule (named `rest`, if given), both to Service `backend` port 80."""
        to = [{"name": backend, "port": 80}]
        catch_all: dict[str, Any] = {"backendRefs": to}
        if rest is not None:
            catch_all["name"] = rest
        await self.route(
            name,
            {
                "parentRefs": [{"name": "gw"}],
                "rules": [
                    {
                        "name": rule,
                        "matches": [{"path": {"type": "PathPrefix", "value": f"/{rule}"}}],
                        "backendRefs": to,
                    },
                    catch_all,
                ],
            },
        )

    async def route(self, name: str, spec: dict[str, Any], kind: str = "HTTPRoute") -> None:
        await self.apply(
            {"apiVersion": f"{GW}/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}
        )


@pytest.fixture
async def cluster(
    kube: client.ApiClient, namespace: str, control_plane: ControlPlane, dataplane_dir: Path
) -> AsyncIterator[Cluster]:
    async with running_controller(kube, namespace, control_plane, dataplane_dir) as running:
        yield running


@contextlib.asynccontextmanager
async def running_controller(
    kube: client.ApiClient,
    namespace: str,
    control_plane: ControlPlane,
    dataplane_dir: Path,
    *,
    mesh: Callable[[client.ApiClient, LocalProvider], Mesh] | None = None,
) -> AsyncIterator[Cluster]:
    """The controller with a GatewayClass of its own; `mesh`: reach Services in
    Istio-injected namespaces over mesh mTLS, as what it makes."""
    suffix = uuid.uuid4().hex[:8]
    controller_name = f"agc-controller.io/e2e-{suffix}"
    ingress_controller = f"agc-controller.io/e2e-ingress-{suffix}"
    class_name = f"agc-e2e-{suffix}"
    await create_gateway_class(kube, class_name, controller_name)
    provider = LocalProvider(state_dir=dataplane_dir)
    api = await api_client_from_kubeconfig(control_plane.kubeconfig)
    controller = Controller(
        api,
        settings=Settings(controller_name=controller_name, workers=2, leader_election=False),
        translate_settings=attrs.evolve(
            local_translate_settings(controller_name, mesh=mesh is not None),
            ingress_controller=ingress_controller,
        ),
        provider=provider,
    )
    provider.requeue = controller.requeue_data_plane
    stop = asyncio.Event()
    task = asyncio.create_task(controller.run(stop))
    meshed = mesh(api, provider) if mesh else None
    renewing = asyncio.create_task(meshed.run()) if meshed else None
    try:
        yield Cluster(
            kube=kube,
            namespace=namespace,
            class_name=class_name,
            provider=provider,
            ingress_controller=ingress_controller,
            mesh=meshed,
        )
    finally:
        if renewing is not None:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
        stop.set()
        await asyncio.wait_for(task, 30)
        await provider.close()
        await api.close()
        await client.CustomObjectsApi(kube).delete_cluster_custom_object(
            GW, "v1", "gatewayclasses", class_name
        )
