"""The in-cluster data plane's Service: one port per listener port and transport, and the
requested addresses as external IPs."""

from __future__ import annotations

import attrs

from agc_controller.core.keys import ObjectKey
from agc_controller.dataplane.manifests import (
    MESH_ROOTS_DIR,
    MESH_TOKEN_DIR,
    DataPlane,
    Owner,
    object_name,
)
from agc_controller.dataplane.settings import DataPlaneMesh, DataPlaneSettings
from agc_controller.translate.ingress import SERVED_NAMESPACE
from agc_controller.translate.model import Frontend, LoadBalancer, RequestedAddress


def _plane(model: LoadBalancer, settings: DataPlaneSettings | None = None) -> DataPlane:
    return DataPlane.for_model(
        model,
        namespace="default",
        owner=Owner(api_version="gateway.networking.k8s.io/v1", kind="Gateway", name="gw", uid="u"),
        controller_name="c",
        settings=settings or DataPlaneSettings(image="i"),
    )


def _model() -> LoadBalancer:
    return LoadBalancer(
        gateway=ObjectKey("Gateway", "ns", "gw"),
        gateway_class="agc",
        generation=1,
        addresses=(),
        frontends=(Frontend(name="http", port=80, protocol="HTTP", hostname=None),),
        hosts=(),
    )


def test_udp_listeners_get_udp_service_ports_beside_tcp_ones_on_the_same_number() -> None:
    model = LoadBalancer(
        gateway=ObjectKey("Gateway", "ns", "gw"),
        gateway_class="agc",
        generation=1,
        addresses=(),
        frontends=(
            Frontend(name="http", port=80, protocol="HTTP", hostname=None),
            Frontend(name="web", port=80, protocol="HTTP", hostname="example.com"),
            Frontend(name="tcp", port=5353, protocol="TCP", hostname=None),
            Frontend(name="dns", port=5353, protocol="UDP", hostname=None),
        ),
        hosts=(),
    )
    plane = _plane(model)
    ports = plane.service()["spec"]["ports"]
    assert [(p["name"], p["port"], p["targetPort"], p["protocol"]) for p in ports] == [
        ("port-80", 80, 80, "TCP"),
        ("port-5353", 5353, 5353, "TCP"),
        ("udp-5353", 5353, 5353, "UDP"),
    ]
    assert "externalIPs" not in plane.service()["spec"]
    requested = attrs.evolve(
        model,
        addresses=(
            RequestedAddress("IPAddress", "203.0.113.7"),
            RequestedAddress("IPAddress", ""),
        ),
    )
    with_addresses = _plane(requested)
    # a requested address is an external IP; an entry without a value asks for nothing
    assert with_addresses.service()["spec"]["externalIPs"] == ["203.0.113.7"]


def test_object_names_are_labels_and_an_ingress_class_s_differ_from_a_gateway_s() -> None:
    long = "x" * 80
    gateway = object_name(ObjectKey("Gateway", "default", long))
    ingress = object_name(ObjectKey("Gateway", SERVED_NAMESPACE, long))
    assert (len(gateway), len(ingress)) == (63, 63)
    assert gateway.startswith("agc-x")
    assert ingress.startswith("agc-ingress-x")
    assert object_name(ObjectKey("Gateway", SERVED_NAMESPACE, "agc")) == "agc-ingress-agc"
    assert object_name(ObjectKey("Gateway", "default", "agc")) == "agc-agc"


def test_without_mesh_mtls_a_pod_gets_nothing_mesh_related() -> None:
    pod = _plane(_model()).deployment()["spec"]["template"]["spec"]
    assert "istio" not in str(pod).lower()
    assert "mesh" not in str(pod).lower()
    assert "POD_SERVICE_ACCOUNT" not in str(pod)


def test_with_mesh_mtls_a_pod_gets_its_own_token_the_roots_and_the_agents_options() -> None:
    mesh = DataPlaneMesh(
        ca_address="istiod.istio-system.svc:15012",
        ca_server_name="istiod.istio-system.svc",
        trust_domain="example.org",
    )
    plain = _plane(_model()).deployment()
    meshed = _plane(_model(), DataPlaneSettings(image="i", mesh=mesh)).deployment()
    pod = meshed["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["volumes"][1:] == [
        {
            "name": "istio-token",
            "projected": {
                "sources": [
                    {
                        "serviceAccountToken": {
                            "audience": "istio-ca",
                            "expirationSeconds": 43200,
                            "path": "istio-token",
                        }
                    }
                ]
            },
        },
        {
            "name": "istio-ca-root-cert",
            "configMap": {"name": "istio-ca-root-cert", "optional": True},
        },
    ]
    assert container["volumeMounts"][1:] == [
        {"name": "istio-token", "mountPath": "/var/run/secrets/tokens", "readOnly": True},
        {"name": "istio-ca-root-cert", "mountPath": "/var/run/secrets/istio", "readOnly": True},
    ]
    assert (MESH_TOKEN_DIR, MESH_ROOTS_DIR) == ("/var/run/secrets/tokens", "/var/run/secrets/istio")
    assert container["env"][-1] == {
        "name": "POD_SERVICE_ACCOUNT",
        "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}},
    }
    assert container["args"][-3:] == [
        "--mesh-ca-address=istiod.istio-system.svc:15012",
        "--mesh-ca-server-name=istiod.istio-system.svc",
        "--mesh-trust-domain=example.org",
    ]
    # nothing else differs from a pod without mesh mTLS
    plain_container = plain["spec"]["template"]["spec"]["containers"][0]
    for key, added in (("args", 3), ("env", 1), ("volumeMounts", 2)):
        assert container[key][:-added] == plain_container[key]
        container[key] = plain_container[key]
    pod["volumes"] = pod["volumes"][:1]
    assert meshed == plain
