"""Settings of the data-plane Deployments the controller provisions (deployment mode)."""

from __future__ import annotations

import ipaddress
from typing import Any

import attrs

# Service types a data-plane Service may have (CLI --dataplane-service-type)
SERVICE_TYPES = ("LoadBalancer", "NodePort", "ClusterIP")


def _positive(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ValueError(f"{attribute.name} must be at least 1, got {value}")


@attrs.frozen(kw_only=True)
class DataPlaneMesh:
    """Mesh mTLS for the data-plane pods (docs/mesh.md): each pod obtains its own
    workload certificate from istiod with its own service-account token, so the
    private key never leaves the pod."""

    # istiod's certificate service (host:port) as the data-plane pods reach it
    ca_address: str
    # the name istiod's serving certificate carries (istiod.<namespace>.svc)
    ca_server_name: str
    # the mesh's trust domain: a pod's identity is spiffe://<it>/ns/<namespace>/sa/<account>
    trust_domain: str


@attrs.frozen(kw_only=True)
class DataPlaneSettings:
    """The data-plane Deployment the controller provisions per Gateway (deployment mode).

    `replicas` and `service_type` are defaults: a Gateway (or its GatewayClass)
    overrides them with the annotations in manifests.py.
    """

    # the data-plane image: NGINX with the Lua and stream modules, and this package
    image: str = "ghcr.io/agc-controller/agc-dataplane:latest"
    image_pull_policy: str = "IfNotPresent"
    # Secrets the data-plane pods pull the image with: by name, each in every
    # Gateway's namespace (a pod can only name Secrets of its own namespace)
    image_pull_secrets: tuple[str, ...] = ()
    replicas: int = attrs.field(default=1, validator=_positive)
    service_type: str = attrs.field(
        default="LoadBalancer", validator=attrs.validators.in_(SERVICE_TYPES)
    )
    # the data-plane container's resources (a Kubernetes ResourceRequirements)
    resources: dict[str, Any] = attrs.field(factory=dict)
    # the agent's /healthz, /readyz and /metrics port in the pod
    health_port: int = 8081
    # the controller's namespace: the data planes of IngressClasses live there (their
    # Gateway exists only in translation)
    home_namespace: str = "default"
    # the ranges a Gateway's spec.addresses may name (its Service's external IPs:
    # addresses.py); none: spec.addresses is refused
    static_addresses: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    # mesh mTLS to backends in the mesh; None: off, and the pods get nothing mesh-related
    mesh: DataPlaneMesh | None = None
