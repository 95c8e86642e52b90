"""End to end: Istio mesh mTLS with workload certificates from a real istiod.

istiod (hack/istiod.sh, devcluster/istiod.py) runs against the session's
kube-apiserver and is the mesh's CA. The gateway's identity is a service
account of the test namespace; the stand-in for a sidecar is an echo backend
whose own workload certificate comes from the same istiod (the same code path:
a CSR and a service-account token) and which requires a client certificate
chaining to the mesh's roots. Its answers name the client's SPIFFE identity.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from agc_controller.core.clock import SystemClock
from agc_controller.core.conditions import MESH_IDENTITY
from agc_controller.factory import Mesh, MeshOptions, mesh_for
from agc_controller.kube import server_side_apply
from agc_controller.mesh import (
    IstioCA,
    RootsConfigMap,
    TokenRequest,
    WorkloadCertificate,
    WorkloadIdentity,
    spiffe_id,
)
from agc_controller.mesh.sources import ROOTS_CONFIGMAP
from agc_controller.providers.local import LocalProvider
from devcluster import ControlPlane
from devcluster.controlplane import free_port
from devcluster.istiod import SERVER_NAME, Istiod, build_istiod
from devcluster.netns import BackendNamespace
from tests.conftest import new_namespace
from tests.e2e.certs import CertificateAuthority
from tests.e2e.conftest import Cluster, running_controller
from tests.e2e.load import Load
from tests.e2e.test_http_routing import HTTP, eventually_status, get

GATEWAY_SA = "gateway"


@pytest.fixture(scope="module")
def istiod(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Istiod]:
    server = Istiod(
        plane=control_plane, binary=build_istiod(), workdir=tmp_path_factory.mktemp("istiod")
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def service_account(kube: client.ApiClient, namespace: str, name: str) -> None:
    """Service account `name` (already there is as good)."""
    try:
        await client.CoreV1Api(kube).create_namespaced_service_account(
            namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
        )
    except ApiException as e:
        if e.status != 409:
            raise


async def roots_published(kube: client.ApiClient, namespace: str) -> str:
    """The mesh's roots, once istiod has published them into `namespace`."""
    roots = RootsConfigMap(kube, namespace)
    async with asyncio.timeout(30):
        while True:
            config_maps = await client.CoreV1Api(kube).list_namespaced_config_map(namespace)
            if any(cm.metadata.name == ROOTS_CONFIGMAP for cm in config_maps.items):
                return await roots()
            await asyncio.sleep(0.2)


async def ignore(_: WorkloadCertificate) -> None:
    return


async def workload_certificate(
    kube: client.ApiClient, istiod: Istiod, namespace: str, name: str
) -> WorkloadCertificate:
    await service_account(kube, namespace, name)
    roots = await roots_published(kube, namespace)
    identity = WorkloadIdentity(
        spiffe_id=spiffe_id("cluster.local", namespace, name),
        ca=IstioCA(istiod.ca_address, server_name=SERVER_NAME),
        token=TokenRequest(kube, namespace, name),
        roots=RootsConfigMap(kube, namespace),
        clock=SystemClock(),
        on_change=ignore,
    )
    return await identity.renew(roots)


@pytest.fixture
async def mesh_namespace(kube: client.ApiClient) -> AsyncIterator[str]:
    async with new_namespace(kube, "mesh") as name:
        body = {"metadata": {"labels": {"istio-injection": "enabled"}}}
        await client.CoreV1Api(kube).patch_namespace(name, body)
        yield name


@pytest.fixture
async def mesh_cluster(
    kube: client.ApiClient,
    namespace: str,
    control_plane: ControlPlane,
    dataplane_dir: Path,
    istiod: Istiod,
) -> AsyncIterator[Cluster]:
    await service_account(kube, namespace, GATEWAY_SA)
    options = MeshOptions(
        namespace=namespace,
        service_account=GATEWAY_SA,
        ca_address=istiod.ca_address,
        ca_server_name=SERVER_NAME,
    )

    def mesh(api: client.ApiClient, provider: LocalProvider) -> Mesh:
        return mesh_for(options, api, provider.mesh, provider.use_mesh_certificate)

    async with running_controller(
        kube, namespace, control_plane, dataplane_dir, mesh=mesh
    ) as running:
        yield running


@attrs.frozen
class MeshBackends:
    """Echo backends standing in for sidecars in one injected namespace: each has
    a workload certificate and requires one from the mesh of its clients."""

    kube: client.ApiClient
    istiod: Istiod
    backends: BackendNamespace
    directory: Path
    namespace: str

    async def start(
        self, name: str, *, account: str, proves: str | None = None, other_ca: bool = False
    ) -> str:
        """A backend whose pod runs as `account`, presenting a certificate for `proves`
        (default: the same account) from istiod, or (`other_ca`) from a CA of its own;
        returns its address."""
        proves = proves or account
        if other_ca:
            stranger = CertificateAuthority("not-the-mesh")
            pair = stranger.issue_uri(spiffe_id("cluster.local", self.namespace, proves))
            chain, key = pair.cert_pem, pair.key_pem
        else:
            await service_account(self.kube, self.namespace, account)
            issued = await workload_certificate(self.kube, self.istiod, self.namespace, proves)
            chain, key = issued.chain_pem, issued.key_pem
        roots = await roots_published(self.kube, self.namespace)
        files = {"chain": chain, "key": key, "roots": roots}
        for kind, text in files.items():
            (self.directory / f"{name}-{kind}.pem").write_text(text)
        args = (
            *("--tls-cert", str(self.directory / f"{name}-chain.pem")),
            *("--tls-key", str(self.directory / f"{name}-key.pem")),
            *("--client-ca", str(self.directory / f"{name}-roots.pem")),
        )
        address = self.backends.start_echo(f"{name}-{uuid.uuid4().hex[:6]}", args=args)
        await self._pod_and_service(name, account, address)
        return address

    async def _pod_and_service(self, name: str, account: str, address: str) -> None:
        """The pod the endpoint says it is (never scheduled: only its service account
        and the injector's label matter here), a Service and its EndpointSlice."""
        core = client.CoreV1Api(self.kube)
        pod = {
            "metadata": {"name": name, "labels": {"security.istio.io/tlsMode": "istio"}},
            "spec": {
                "serviceAccountName": account,
                "containers": [{"name": "app", "image": "registry.invalid/echo"}],
            },
        }
        await core.create_namespaced_pod(self.namespace, pod)
        service = {
            "metadata": {"name": name},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        }
        await core.create_namespaced_service(self.namespace, service)
        endpoint_slice = {
            "metadata": {
                "name": f"{name}-1",
                "labels": {"kubernetes.io/service-name": name},
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": [
                {
                    "addresses": [address],
                    "conditions": {"ready": True},
                    "targetRef": {"kind": "Pod", "name": name, "namespace": self.namespace},
                }
            ],
        }
        await client.DiscoveryV1Api(self.kube).create_namespaced_endpoint_slice(
            self.namespace, endpoint_slice
        )


async def grant_routes_from(kube: client.ApiClient, namespace: str, routes_namespace: str) -> None:
    """Let HTTPRoutes of `routes_namespace` name Services of `namespace`."""
    grant = {
        "apiVersion": "gateway.networking.k8s.io/v1beta1",
        "kind": "ReferenceGrant",
        "metadata": {"name": f"from-{routes_namespace}", "namespace": namespace},
        "spec": {
            "from": [
                {
                    "group": "gateway.networking.k8s.io",
                    "kind": "HTTPRoute",
                    "namespace": routes_namespace,
                }
            ],
            "to": [{"group": "", "kind": "Service"}],
        },
    }
    await server_side_apply(kube, grant, plural="referencegrants")


async def mesh_identity_condition(cluster: Cluster, reason: str) -> dict[str, Any]:
    """The Gateway's MeshIdentity condition, once its reason is `reason`."""
    async with asyncio.timeout(20):
        while True:
            gateway = await cluster.custom.get_namespaced_custom_object(
                "gateway.networking.k8s.io", "v1", cluster.namespace, "gateways", "gw"
            )
            for condition in (gateway.get("status") or {}).get("conditions") or []:
                if (condition["type"], condition["reason"]) == (MESH_IDENTITY, reason):
                    return dict(condition)
            await asyncio.sleep(0.1)


@attrs.frozen
class MeshGateway:
    cluster: Cluster
    address: str
    mesh: MeshBackends


@pytest.fixture
async def mesh_gateway(
    *,
    mesh_cluster: Cluster,
    mesh_namespace: str,
    kube: client.ApiClient,
    istiod: Istiod,
    backends: BackendNamespace,
    tmp_path: Path,
) -> MeshGateway:
    """A Gateway with /mesh to an honest mesh workload, /plain to an ordinary
    Service, and every other /<name> to the mesh Service <name>."""
    mesh = MeshBackends(kube, istiod, backends, tmp_path, mesh_namespace)
    await grant_routes_from(kube, mesh_namespace, mesh_cluster.namespace)
    await mesh.start("honest", account="backend")
    await mesh_cluster.service("plain", [backends.start_echo("plain-backend")])
    address = await mesh_cluster.gateway("gw", HTTP)
    rules = [
        {
            "matches": [{"path": {"type": "PathPrefix", "value": f"/{name}"}}],
            "backendRefs": [{"name": name, "namespace": mesh_namespace, "port": 80}],
        }
        for name in ("honest", "impostor", "stranger", "unknown")
    ]
    rules.append(
        {
            "matches": [{"path": {"type": "PathPrefix", "value": "/plain"}}],
            "backendRefs": [{"name": "plain", "port": 80}],
        }
    )
    await mesh_cluster.route("r", {"parentRefs": [{"name": "gw"}], "rules": rules})
    return MeshGateway(cluster=mesh_cluster, address=address, mesh=mesh)


async def test_mesh_backend_sees_the_gateway_identity_and_others_are_unaffected(
    mesh_gateway: MeshGateway,
) -> None:
    address = mesh_gateway.address
    _, _, body = await eventually_status(address, "/honest", 200)
    # the gateway presented its own workload identity, issued by the mesh's CA
    gateway_namespace = mesh_gateway.cluster.namespace
    identity = spiffe_id("cluster.local", gateway_namespace, GATEWAY_SA)
    assert body["client_uris"] == [identity]
    # and says so in its status
    condition = await mesh_identity_condition(mesh_gateway.cluster, "CertificateIssued")
    assert condition["status"] == "True"
    assert identity in condition["message"]
    # a Service outside the mesh is spoken to as before: plain HTTP
    _, _, plain = await eventually_status(address, "/plain", 200)
    assert plain["name"] == "plain-backend"
    assert plain["client_uris"] is None


async def test_an_endpoint_that_is_not_who_its_pod_runs_as_gets_no_traffic(
    mesh_gateway: MeshGateway,
) -> None:
    address, mesh = mesh_gateway.address, mesh_gateway.mesh
    await eventually_status(address, "/honest", 200)
    # a mesh certificate, but for another service account than its pod's
    await mesh.start("impostor", account="backend", proves="intruder")
    # the right name, from a CA that is not the mesh's
    await mesh.start("stranger", account="backend", other_ca=True)
    for path in ("/impostor", "/stranger"):
        # translated and programmed (the Service exists) and answering 503: never sent
        status, _, _ = await eventually_status(address, path, 503)
        assert status == 503
    # the honest one keeps serving beside them
    status, _, body = await get(address, "/honest")
    assert status == 200
    assert body["name"].startswith("honest-")


async def test_certificate_rotation_under_load_fails_no_request(
    mesh_gateway: MeshGateway,
) -> None:
    address, provider = mesh_gateway.address, mesh_gateway.cluster.provider
    _, _, before = await eventually_status(address, "/honest?close=1", 200)
    first = provider.mesh.certificate
    assert first is not None
    # a renewal, as the identity's loop makes at half the certificate's lifetime
    async with Load(f"http://{address}/honest", seconds=6, connections=8) as load:
        await asyncio.sleep(2)
        mesh = mesh_gateway.cluster.mesh
        assert mesh is not None
        await provider.use_mesh_certificate(await mesh.identity.renew(first.roots_pem))
    assert load.result is not None
    assert load.result.requests > 100, load.result.output
    assert load.result.failed == 0, load.result.output
    # a connection opened after the renewal presents the new certificate
    _, _, after = await get(address, "/honest?close=1")
    assert after["client_uris"] == before["client_uris"]
    assert after["client_serial"] != before["client_serial"]


async def test_without_its_ca_the_gateway_says_why_and_mesh_backends_answer_503(
    *,
    kube: client.ApiClient,
    namespace: str,
    control_plane: ControlPlane,
    dataplane_dir: Path,
    istiod: Istiod,
    mesh_namespace: str,
    backends: BackendNamespace,
    tmp_path: Path,
) -> None:
    await service_account(kube, namespace, GATEWAY_SA)
    nobody = MeshOptions(
        namespace=namespace,
        service_account=GATEWAY_SA,
        ca_address=f"127.0.0.1:{free_port()}",  # nothing listens there
        ca_server_name=SERVER_NAME,
    )
    async with running_controller(
        kube,
        namespace,
        control_plane,
        dataplane_dir,
        mesh=lambda api, provider: mesh_for(
            nobody, api, provider.mesh, provider.use_mesh_certificate
        ),
    ) as cluster:
        mesh = MeshBackends(kube, istiod, backends, tmp_path, mesh_namespace)
        await grant_routes_from(kube, mesh_namespace, namespace)
        await mesh.start("honest", account="backend")
        await cluster.service("plain", [backends.start_echo("plain-backend")])
        address = await cluster.gateway("gw", HTTP)
        rules = [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": "/honest"}}],
                "backendRefs": [{"name": "honest", "namespace": mesh_namespace, "port": 80}],
            },
            {"backendRefs": [{"name": "plain", "port": 80}]},
        ]
        await cluster.route("r", {"parentRefs": [{"name": "gw"}], "rules": rules})
        condition = await mesh_identity_condition(cluster, "CertificateAuthorityUnavailable")
        assert condition["status"] == "False"
        assert "UNAVAILABLE" in condition["message"]
        assert nobody.ca_address in condition["message"]
        status, _, _ = await get(address, "/honest")
        assert status == 503
        # the rest of the Gateway serves
        status, _, _ = await get(address, "/")
        assert status == 200
