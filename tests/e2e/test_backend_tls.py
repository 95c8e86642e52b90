"""End-to-end TLS: BackendTLSPolicy (CA, SNI/hostname verification) and backend mTLS."""

from __future__ import annotations

from pathlib import Path

import pytest

from agc_controller.core.resources import POLICY_GROUP
from devcluster.netns import BackendNamespace
from tests.e2e.certs import CertificateAuthority
from tests.e2e.conftest import Cluster
from tests.e2e.test_http_routing import HTTP, eventually_status, get

GW = "gateway.networking.k8s.io"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    directory = tmp_path_factory.mktemp("backend-pki")
    backend_ca, client_ca = (
        CertificateAuthority("backends"),
        CertificateAuthority("gateway-clients"),
    )
    server = backend_ca.issue("backend.example.com")
    (directory / "server.crt").write_text(server.cert_pem)
    (directory / "server.key").write_text(server.key_pem)
    (directory / "client-ca.pem").write_text(client_ca.pem)
    return {"dir": directory, "backend_ca": backend_ca, "client_ca": client_ca}


@pytest.fixture(scope="module")
def tls_echo(backends: BackendNamespace, pki: dict[str, object]) -> dict[str, str]:
    d = pki["dir"]
    assert isinstance(d, Path)
    tls = ("--tls-cert", str(d / "server.crt"), "--tls-key", str(d / "server.key"))
    return {
        "tls": backends.start_echo("tls-backend", args=tls),
        "mtls": backends.start_echo(
            "mtls-backend", args=(*tls, "--client-ca", str(d / "client-ca.pem"))
        ),
    }


def policy(name: str, service: str, hostname: str) -> dict[str, object]:
    return {
        "apiVersion": f"{GW}/v1",
        "kind": "BackendTLSPolicy",
        "metadata": {"name": name},
        "spec": {
            "targetRefs": [{"group": "", "kind": "Service", "name": service}],
            "validation": {
                "hostname": hostname,
                "caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": "backend-ca"}],
            },
        },
    }


async def trust_backend_ca(cluster: Cluster, pki: dict[str, object]) -> None:
    """The ConfigMap `backend-ca` the policies trust: the backends' CA."""
    backend_ca = pki["backend_ca"]
    assert isinstance(backend_ca, CertificateAuthority)
    await cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "backend-ca"},
            "data": {"ca.crt": backend_ca.pem},
        }
    )


async def test_backend_tls_verifies_the_backend(
    cluster: Cluster, tls_echo: dict[str, str], pki: dict[str, object]
) -> None:
    await trust_backend_ca(cluster, pki)
    await cluster.service("good", [tls_echo["tls"]])
    await cluster.service("wrong-name", [tls_echo["tls"]])
    await cluster.apply(policy("good", "good", "backend.example.com"))
    await cluster.apply(policy("wrong-name", "wrong-name", "other.example.com"))
    address = await cluster.gateway("gw", HTTP)
    await cluster.route(
        "r",
        {
            "parentRefs": [{"name": "gw"}],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/good"}}],
                    "backendRefs": [{"name": "good", "port": 80}],
                },
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/wrong"}}],
                    "backendRefs": [{"name": "wrong-name", "port": 80}],
                },
            ],
        },
    )
    _, _, body = await eventually_status(address, "/good", 200)
    assert body["name"] == "tls-backend"
    status, _, _ = await get(address, "/wrong")
    assert 500 <= status < 600  # a certificate that does not match fails fast, never plaintext


async def test_error_pages_over_backend_tls(
    cluster: Cluster, tls_echo: dict[str, str], pki: dict[str, object]
) -> None:
    """Custom error pages for a backend spoken to over TLS (the TLS location that
    intercepts them), from an error backend over TLS too."""
    await trust_backend_ca(cluster, pki)
    await cluster.service("good", [tls_echo["tls"]])
    await cluster.apply(policy("good", "good", "backend.example.com"))
    await cluster.apply(
        {
            "apiVersion": f"{POLICY_GROUP}/v1alpha1",
            "kind": "HTTPRouteFilter",
            "metadata": {"name": "pages"},
            "spec": {
                "errorPages": {"statusCodes": [404], "backendRef": {"name": "good", "port": 80}}
            },
        }
    )
    address = await cluster.gateway("gw", HTTP)
    pages = {"group": POLICY_GROUP, "kind": "HTTPRouteFilter", "name": "pages"}
    await cluster.route(
        "r",
        {
            "parentRefs": [{"name": "gw"}],
            "rules": [
                {
                    "filters": [{"type": "ExtensionRef", "extensionRef": pages}],
                    "backendRefs": [{"name": "good", "port": 80}],
                }
            ],
        },
    )
    _, _, body = await eventually_status(address, "/app", 200)
    assert (body["name"], body["path"]) == ("tls-backend", "/app")
    status, _, body = await get(address, "/app?status=404")
    # answered by the error page request (path "/"), which went over TLS as well
    assert (status, body["path"], body["headers"]["X-Code"]) == (404, "/?status=404", "404")
    assert (await get(address, "/app?status=500"))[0] == 500


async def test_gateway_presents_client_certificate(
    cluster: Cluster, tls_echo: dict[str, str], pki: dict[str, object]
) -> None:
    client_ca = pki["client_ca"]
    assert isinstance(client_ca, CertificateAuthority)
    await trust_backend_ca(cluster, pki)
    await cluster.apply(client_ca.issue("gateway-client", client=True).secret("gateway-client"))
    await cluster.service("mtls", [tls_echo["mtls"]])
    await cluster.apply(policy("mtls", "mtls", "backend.example.com"))
    address = await cluster.gateway(
        "gw", HTTP, tls={"backend": {"clientCertificateRef": {"name": "gateway-client"}}}
    )
    await cluster.route(
        "r",
        {
            "parentRefs": [{"name": "gw"}],
            "rules": [{"backendRefs": [{"name": "mtls", "port": 80}]}],
        },
    )
    _, _, body = await eventually_status(address, "/", 200)
    assert body["client_cert"] == {"commonName": "gateway-client"}
