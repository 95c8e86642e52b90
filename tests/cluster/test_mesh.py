"""Istio mesh mTLS from the in-cluster data plane: the chart with mesh.enabled on a real node.

istiod (devcluster/istiod.py) runs on the host against the cluster's
apiserver, its certificate service bound to the node's address so pods reach
it. What is checked, with real traffic from the host to the data plane's
Service (ClusterIP, through kube-proxy):
- the data-plane pod obtains its OWN workload certificate from istiod (its
  service account's identity, not the controller's) and presents it to a mesh
  backend: a pod standing in for a sidecar, in an injected namespace, that
  requires a client certificate of the mesh and answers with the client's
  SPIFFE ID; the Gateway's MeshIdentity condition names the same identity;
- a backend outside the mesh, behind the same Gateway, is served as usual;
- an endpoint whose certificate is not its pod's service account's (an
  impostor) gets no traffic (503), while the honest one keeps serving.

This release has a controllerName, GatewayClass, lease and namespace of its own
(and no IngressClass), so it never meets test_incluster.py's release. The
agc-controller CRDs are cluster-wide: installed by this release only when no
release has installed them, and then removed again at the end.
"""

from __future__ import annotations

import asyncio
import functools
import http.client
import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from agc_controller.core.conditions import MESH_IDENTITY
from agc_controller.kube import api_client_from_kubeconfig
from agc_controller.mesh import WorkloadCertificate, spiffe_id
from devcluster.cluster import CHART, helm, image_values, install_chart
from devcluster.istiod import SERVER_NAME, Istiod, build_istiod
from devcluster.node import NODE_ADDRESS
from tests.cluster.conftest import Cluster
from tests.cluster.test_incluster import BACKEND, condition, http_get, wait_for
from tests.e2e.test_mesh import (
    grant_routes_from,
    roots_published,
    service_account,
    workload_certificate,
)

RELEASE = "agcmesh"
NAMESPACE = "agc-mesh"
GATEWAY_CLASS = "agcmesh"
# the Gateway, its route and the backend outside the mesh
APP = "mesh-app"
# the Istio-injected namespace of the mesh backends
SHOP = "mesh-shop"
SHOP_ACCOUNT = "shop"
TRUST_DOMAIN = "cluster.local"
OWN_CRDS = CHART / "files" / "crds"
# where a mesh backend's certificate, key and the mesh's roots are mounted
CERTS = "/etc/mesh"

# a sidecar's stand-in: TLS on 8080 with a client certificate of the mesh
# required, answering with the client certificate's URI SANs
MESH_BACKEND = f"""
import http.server, ssl, sys
CONTEXT = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
CONTEXT.load_cert_chain("{CERTS}/chain.pem", "{CERTS}/key.pem")
CONTEXT.load_verify_locations("{CERTS}/roots.pem")
CONTEXT.verify_mode = ssl.CERT_REQUIRED
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def do_GET(self):
        names = self.connection.getpeercert().get("subjectAltName", ())
        body = " ".join(v for k, v in names if k == "URI").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
class Server(http.server.ThreadingHTTPServer):
    # the handshake in the request's thread: a slow client holds up no other
    def finish_request(self, request, client_address):
        with CONTEXT.wrap_socket(request, server_side=True) as tls:
            super().finish_request(tls, client_address)
    def handle_error(self, request, client_address):
        # probes and refused handshakes: one line each
        print(client_address, sys.exc_info()[1], file=sys.stderr, flush=True)
Server(("", 8080), Handler).serve_forever()
"""


@pytest.fixture(scope="module")
def istiod(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Istiod]:
    """istiod on the host; its CA on the node's address, where pods reach the host."""
    server = Istiod(
        plane=cluster.plane,
        binary=build_istiod(),
        workdir=tmp_path_factory.mktemp("istiod"),
        secure_address=NODE_ADDRESS,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _own_crds_installed(cluster: Cluster) -> bool:
    return any(
        crd["metadata"]["name"].endswith(".agc-controller.io")
        for crd in cluster.get("crds")["items"]
    )


@pytest.fixture(scope="module")
def mesh_release(cluster: Cluster, istiod: Istiod) -> Iterator[Cluster]:
    """The chart with mesh mTLS, its data planes one pod each behind a ClusterIP."""
    installs_crds = not _own_crds_installed(cluster)
    install_chart(
        cluster.plane.kubeconfig,
        release=RELEASE,
        namespace=NAMESPACE,
        values={
            **image_values(cluster.images.values()),
            "controllerName": "agc-controller.io/mesh-gateway-controller",
            "ingressController": "agc-controller.io/mesh-ingress-controller",
            "ingressClass.create": "false",
            "gatewayClass.name": GATEWAY_CLASS,
            "leaderElection.leaseName": f"{RELEASE}-controller",
            "crds.install": str(installs_crds).lower(),
            "dataplane.serviceType": "ClusterIP",
            "dataplane.replicas": "1",
            "mesh.enabled": "true",
            "mesh.caAddress": istiod.ca_address,
            "mesh.caServerName": SERVER_NAME,
        },
    )
    try:
        yield cluster
    finally:
        # the Gateway's namespace first, while the controller still runs
        cluster.kubectl(
            "delete", "namespace", APP, SHOP, "--ignore-not-found", "--timeout=90s", check=False
        )
        helm(cluster.plane.kubeconfig, "uninstall", RELEASE, "--namespace", NAMESPACE, "--wait")
        cluster.kubectl("delete", "namespace", NAMESPACE, "--timeout=90s", check=False)
        if installs_crds:
            # a release installed later (test_incluster.py's) owns them then
            cluster.kubectl("delete", "-f", str(OWN_CRDS), "--ignore-not-found", check=False)


@attrs.frozen
class MeshCertificates:
    """What the mesh backends present, and a client certificate of the mesh for the host."""

    roots_pem: str
    # service account → its workload certificate from istiod
    issued: dict[str, WorkloadCertificate]


async def _issue(cluster: Cluster, istiod: Istiod) -> MeshCertificates:
    async with await api_client_from_kubeconfig(cluster.plane.kubeconfig) as kube:
        await service_account(kube, SHOP, SHOP_ACCOUNT)
        await grant_routes_from(kube, SHOP, APP)
        roots = await roots_published(kube, SHOP)
        issued = {
            account: await workload_certificate(kube, istiod, SHOP, account)
            for account in (SHOP_ACCOUNT, "other")
        }
    return MeshCertificates(roots_pem=roots, issued=issued)


def _mesh_backend(
    image: str, name: str, presents: WorkloadCertificate, roots: str
) -> list[dict[str, Any]]:
    """A pod running as SHOP_ACCOUNT with the sidecar's label, presenting `presents`,
    its Secret and its Service."""
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": SHOP},
        "stringData": {
            "chain.pem": presents.chain_pem,
            "key.pem": presents.key_pem,
            "roots.pem": roots,
        },
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": SHOP,
            "labels": {"app": name, "security.istio.io/tlsMode": "istio"},
        },
        "spec": {
            "serviceAccountName": SHOP_ACCOUNT,
            "containers": [
                {
                    "name": "app",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "command": ["python3", "-c", MESH_BACKEND],
                    "ports": [{"containerPort": 8080}],
                    # a TLS handshake needs the mesh's client certificate: a TCP probe
                    "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 2},
                    "volumeMounts": [{"name": "mesh", "mountPath": CERTS, "readOnly": True}],
                }
            ],
            "volumes": [{"name": "mesh", "secret": {"secretName": name}}],
        },
    }
    return [secret, pod, _service(SHOP, name)]


def _plain_backend(image: str) -> list[dict[str, Any]]:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "plain", "namespace": APP, "labels": {"app": "plain"}},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "command": ["python3", "-c", BACKEND],
                    "env": [{"name": "POD_NAME", "value": "plain"}],
                    "ports": [{"containerPort": 8080}],
                    "readinessProbe": {"httpGet": {"path": "/", "port": 8080}},
                }
            ]
        },
    }
    return [pod, _service(APP, "plain")]


def _service(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "selector": {"app": name},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
        },
    }


def _gateway_and_route() -> list[dict[str, Any]]:
    rules = [
        {
            "matches": [{"path": {"type": "PathPrefix", "value": f"/{name}"}}],
            "backendRefs": [{"name": name, "namespace": SHOP, "port": 80}],
        }
        for name in ("honest", "impostor")
    ]
    rules.append(
        {
            "matches": [{"path": {"type": "PathPrefix", "value": "/plain"}}],
            "backendRefs": [{"name": "plain", "port": 80}],
        }
    )
    gateway = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": APP},
        "spec": {
            "gatewayClassName": GATEWAY_CLASS,
            "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
        },
    }
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "shop", "namespace": APP},
        "spec": {"parentRefs": [{"name": "gw"}], "rules": rules},
    }
    return [gateway, route]


def _apply(cluster: Cluster, objects: list[dict[str, Any]]) -> None:
    cluster.kubectl("apply", "-f", "-", manifest="\n---\n".join(json.dumps(o) for o in objects))


@attrs.frozen
class MeshGateway:
    cluster: Cluster
    # the Gateway's address: its Service's ClusterIP
    address: str
    certificates: MeshCertificates
    # a client certificate of the mesh, for the host to speak to a backend pod itself
    client_certificate: Path


def _ready_pod(cluster: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    pod = cluster.get("pod", "-n", namespace, name)
    return pod if condition(pod, "Ready") == "True" else None


def _gateway_address(cluster: Cluster) -> str | None:
    gateway = cluster.get("gateway", "-n", APP, "gw")
    if condition(gateway, "Programmed") != "True":
        return None
    addresses = [a["value"] for a in gateway["status"].get("addresses", [])]
    return addresses[0] if len(addresses) == 1 else None


@pytest.fixture(scope="module")
def mesh_gateway(
    mesh_release: Cluster, istiod: Istiod, tmp_path_factory: pytest.TempPathFactory
) -> MeshGateway:
    """A Gateway routing /honest and /impostor to mesh backends (pods running as
    SHOP_ACCOUNT, presenting its certificate and another account's), /plain to a
    backend outside the mesh."""
    cluster = mesh_release
    image = cluster.images["agc-controller"]
    namespaces = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": APP}},
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": SHOP, "labels": {"istio-injection": "enabled"}},
        },
    ]
    _apply(cluster, namespaces)
    certificates = asyncio.run(_issue(cluster, istiod))
    roots, issued = certificates.roots_pem, certificates.issued
    _apply(
        cluster,
        [
            *_mesh_backend(image, "honest", issued[SHOP_ACCOUNT], roots),
            *_mesh_backend(image, "impostor", issued["other"], roots),
            *_plain_backend(image),
            *_gateway_and_route(),
        ],
    )
    client = tmp_path_factory.mktemp("mesh-client") / "client.pem"
    client.write_text(issued[SHOP_ACCOUNT].chain_pem + issued[SHOP_ACCOUNT].key_pem)
    address = wait_for(
        "the Gateway to be Programmed", lambda: _gateway_address(cluster), within=180
    )
    for namespace, name in ((SHOP, "honest"), (SHOP, "impostor"), (APP, "plain")):
        wait_for(f"{name} to be ready", functools.partial(_ready_pod, cluster, namespace, name))
    return MeshGateway(
        cluster=cluster, address=address, certificates=certificates, client_certificate=client
    )


def _data_plane(cluster: Cluster) -> tuple[str, str]:
    """The data-plane Deployment's name and the SPIFFE ID of its pods' service account."""
    (deployment,) = cluster.get(
        "deployments", "-n", APP, "-l", "app.kubernetes.io/name=agc-dataplane"
    )["items"]
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    return deployment["metadata"]["name"], spiffe_id(TRUST_DOMAIN, APP, account)


def _answer(
    address: str, path: str, status: int, seen: list[tuple[int, str] | None] | None = None
) -> str | None:
    """The body at `path`, once it answers `status`; the answer goes to `seen`."""
    answer = http_get(f"http://{address}{path}")
    if seen is not None:
        seen[:] = [answer]
    return answer[1] if answer is not None and answer[0] == status else None


def _diagnostics(cluster: Cluster) -> str:
    """The Gateway's conditions and the tail of the controller's and the data plane's logs."""
    gateway = cluster.get("gateway", "-n", APP, "gw")
    parts = [f"Gateway conditions: {gateway.get('status', {}).get('conditions')}"]
    for namespace, selector in (
        (NAMESPACE, "app.kubernetes.io/name=agc-controller"),
        (APP, "app.kubernetes.io/name=agc-dataplane"),
        (SHOP, "security.istio.io/tlsMode=istio"),
    ):
        logs = cluster.kubectl(
            "logs", "-n", namespace, "-l", selector, "--tail=40", "--prefix", check=False
        )
        parts.append(f"{selector} logs:\n{logs}")
    return "\n".join(parts)


def _mesh_identity(cluster: Cluster, seen: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The Gateway's MeshIdentity condition once True; the last one seen goes to `seen`."""
    gateway = cluster.get("gateway", "-n", APP, "gw")
    conditions = gateway.get("status", {}).get("conditions", [])
    found = [c for c in conditions if c["type"] == MESH_IDENTITY]
    seen[:] = found
    return found[0] if found and found[0]["status"] == "True" else None


def test_a_mesh_backend_sees_the_data_plane_pods_own_identity(mesh_gateway: MeshGateway) -> None:
    cluster, address = mesh_gateway.cluster, mesh_gateway.address
    answered: list[tuple[int, str] | None] = []
    try:
        body = wait_for(
            "/honest to answer 200", lambda: _answer(address, "/honest", 200, answered), within=180
        )
    except AssertionError as e:
        raise AssertionError(f"{e}; last: {answered}\n{_diagnostics(cluster)}") from None
    deployment, identity = _data_plane(cluster)
    # the data-plane pod's own service account's identity, from the mesh's CA
    assert body == identity
    controller_account = f"{RELEASE}-agc-controller"
    assert not identity.endswith(f"/sa/{controller_account}")
    # and the Gateway says so
    seen: list[dict[str, Any]] = []
    try:
        found = wait_for("MeshIdentity True", lambda: _mesh_identity(cluster, seen), within=60)
    except AssertionError as e:
        raise AssertionError(f"{e}; last seen: {seen}") from None
    assert found["reason"] == "CertificateIssued"
    assert f"Data-plane pod {deployment}-" in found["message"]
    assert f" presents {identity} " in found["message"]


def test_a_backend_outside_the_mesh_is_served_as_usual(mesh_gateway: MeshGateway) -> None:
    body = wait_for(
        "/plain to answer 200", lambda: _answer(mesh_gateway.address, "/plain", 200), within=120
    )
    assert body == "plain"


def _direct(pod_ip: str, client_certificate: Path, roots: str) -> tuple[int, str]:
    """GET / from the pod itself, as a client of the mesh."""
    context = ssl.create_default_context(cadata=roots)
    # the pod's certificate names a SPIFFE ID, no host
    context.check_hostname = False
    context.load_cert_chain(client_certificate)
    connection = http.client.HTTPSConnection(pod_ip, 8080, context=context, timeout=5)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def test_an_endpoint_not_presenting_its_pods_identity_gets_no_traffic(
    mesh_gateway: MeshGateway,
) -> None:
    cluster, address = mesh_gateway.cluster, mesh_gateway.address
    wait_for("/honest to answer 200", lambda: _answer(address, "/honest", 200), within=180)
    # the impostor is up and serves a client of the mesh (it presents the other
    # account's certificate): only its identity keeps traffic from it
    impostor = wait_for("the impostor ready", lambda: _ready_pod(cluster, SHOP, "impostor"))
    direct = _direct(
        impostor["status"]["podIP"],
        mesh_gateway.client_certificate,
        mesh_gateway.certificates.roots_pem,
    )
    assert direct == (200, spiffe_id(TRUST_DOMAIN, SHOP, SHOP_ACCOUNT))
    try:
        wait_for("/impostor to answer 503", lambda: _answer(address, "/impostor", 503), within=60)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{_diagnostics(cluster)}") from None
    # it stays refused, and the honest one keeps serving beside it
    for _ in range(5):
        assert _answer(address, "/impostor", 503) is not None
        assert _answer(address, "/honest", 200) == _data_plane(cluster)[1]
