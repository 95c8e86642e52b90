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
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import attrs
import pytest
from kubernetes_asyncio import client

from agc_controller.core.clock import SystemClock
from agc_controller.factory import MeshOptions, mesh_identity
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
from devcluster.istiod import SERVER_NAME, Istiod
from devcluster.netns import BackendNamespace
from tests.conftest import new_namespace
from tests.e2e.conftest import Cluster, running_controller
from tests.e2e.load import Load
from tests.e2e.test_http_routing import HTTP, eventually_status, get

REPO = Path(__file__).resolve().parents[2]
GATEWAY_SA = "gateway"


@pytest.fixture(scope="module")
def istiod(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Istiod]:
    built = subprocess.run(
        [str(REPO / "hack" / "istiod.sh")], check=True, stdout=subprocess.PIPE, text=True
    )
    server = Istiod(
        plane=control_plane,
        binary=Path(built.stdout.strip().splitlines()[-1]),
        workdir=tmp_path_factory.mktemp("istiod"),
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def service_account(kube: client.ApiClient, namespace: str, name: str) -> None:
    await client.CoreV1Api(kube).create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
    )


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

    def identity(api: client.ApiClient, provider: LocalProvider) -> WorkloadIdentity:
        return mesh_identity(options, api, provider)

    async with running_controller(
        kube, namespace, control_plane, dataplane_dir, mesh=identity
    ) as running:
        yield running


async def mesh_backend(
    kube: client.ApiClient,
    istiod: Istiod,
    backends: BackendNamespace,
    tmp_path: Path,
    namespace: str,
) -> str:
    """An echo backend with a workload certificate of namespace/backend, which
    requires client certificates from the mesh; returns its address."""
    certificate = await workload_certificate(kube, istiod, namespace, "backend")
    (tmp_path / "chain.pem").write_text(certificate.chain_pem)
    (tmp_path / "key.pem").write_text(certificate.key_pem)
    (tmp_path / "roots.pem").write_text(certificate.roots_pem)
    args = (
        *("--tls-cert", str(tmp_path / "chain.pem"), "--tls-key", str(tmp_path / "key.pem")),
        *("--client-ca", str(tmp_path / "roots.pem")),
    )
    return backends.start_echo(f"mesh-{uuid.uuid4().hex[:6]}", args=args)


async def in_namespace_service(cluster: Cluster, namespace: str, name: str, address: str) -> None:
    """A Service with a hand-made EndpointSlice in `namespace`, which the test
    namespace's routes may name (ReferenceGrant)."""
    other = attrs.evolve(cluster, namespace=namespace)
    await other.service(name, [address])
    await other.apply(
        {
            "apiVersion": "gateway.networking.k8s.io/v1beta1",
            "kind": "ReferenceGrant",
            "metadata": {"name": f"from-{cluster.namespace}"},
            "spec": {
                "from": [
                    {
                        "group": "gateway.networking.k8s.io",
                        "kind": "HTTPRoute",
                        "namespace": cluster.namespace,
                    }
                ],
                "to": [{"group": "", "kind": "Service"}],
            },
        }
    )


@attrs.frozen
class MeshGateway:
    cluster: Cluster
    address: str
    # the identity the gateway presents, from the mesh's CA
    identity: MeshOptions


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
    """A Gateway with /mesh to a Service in an injected namespace (its endpoint a
    mesh workload) and /plain to an ordinary one."""
    secure = await mesh_backend(kube, istiod, backends, tmp_path, mesh_namespace)
    await in_namespace_service(mesh_cluster, mesh_namespace, "secure", secure)
    await mesh_cluster.service("plain", [backends.start_echo("plain-backend")])
    address = await mesh_cluster.gateway("gw", HTTP)
    await mesh_cluster.route(
        "r",
        {
            "parentRefs": [{"name": "gw"}],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/mesh"}}],
                    "backendRefs": [{"name": "secure", "namespace": mesh_namespace, "port": 80}],
                },
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/plain"}}],
                    "backendRefs": [{"name": "plain", "port": 80}],
                },
            ],
        },
    )
    identity = MeshOptions(
        namespace=mesh_cluster.namespace,
        service_account=GATEWAY_SA,
        ca_address=istiod.ca_address,
        ca_server_name=SERVER_NAME,
    )
    return MeshGateway(cluster=mesh_cluster, address=address, identity=identity)


async def test_mesh_backend_sees_the_gateway_identity_and_others_are_unaffected(
    mesh_gateway: MeshGateway,
) -> None:
    address = mesh_gateway.address
    _, _, body = await eventually_status(address, "/mesh", 200)
    # the gateway presented its own workload identity, issued by the mesh's CA
    gateway_namespace = mesh_gateway.cluster.namespace
    assert body["client_uris"] == [spiffe_id("cluster.local", gateway_namespace, GATEWAY_SA)]
    # a Service outside the mesh is spoken to as before: plain HTTP
    _, _, plain = await eventually_status(address, "/plain", 200)
    assert plain["name"] == "plain-backend"
    assert plain["client_uris"] is None


async def test_certificate_rotation_under_load_fails_no_request(
    mesh_gateway: MeshGateway, kube: client.ApiClient
) -> None:
    address, provider = mesh_gateway.address, mesh_gateway.cluster.provider
    _, _, before = await eventually_status(address, "/mesh?close=1", 200)
    first = provider.mesh_certificate
    assert first is not None
    # a renewal, as the identity's loop makes at half the certificate's lifetime
    identity = mesh_identity(mesh_gateway.identity, kube, provider)
    async with Load(f"http://{address}/mesh", seconds=6, connections=8) as load:
        await asyncio.sleep(2)
        await provider.use_mesh_certificate(await identity.renew(first.roots_pem))
    assert load.result is not None
    assert load.result.requests > 100, load.result.output
    assert load.result.failed == 0, load.result.output
    # a connection opened after the renewal presents the new certificate
    _, _, after = await get(address, "/mesh?close=1")
    assert after["client_uris"] == before["client_uris"]
    assert after["client_serial"] != before["client_serial"]
