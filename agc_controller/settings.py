"""Process settings, from the command line and the environment (see cli.py)."""

from __future__ import annotations

import os
import socket
from typing import Any

import attrs

from agc_controller.translate.settings import DEFAULT_CONTROLLER_NAME


def _default_identity() -> str:
    # in a cluster the pod name (HOSTNAME) is unique among replicas
    return f"{os.environ.get('HOSTNAME') or socket.gethostname()}_{os.getpid()}"


@attrs.frozen(kw_only=True)
class Settings:
    # GatewayClasses naming this controllerName are ours
    controller_name: str = DEFAULT_CONTROLLER_NAME
    # concurrent reconciles (never two on one Gateway)
    workers: int = 4
    # off for a single local process; on for replicated deployments
    leader_election: bool = True
    lease_namespace: str = "default"
    lease_name: str = "agc-controller"
    # this replica's name in the Lease
    identity: str = attrs.field(factory=_default_identity)


# how the local provider runs its data planes (CLI --local-dataplane)
LOCAL_DATAPLANE_MODES = ("process", "deployment")
# Service types a data-plane Service may have (CLI --dataplane-service-type)
SERVICE_TYPES = ("LoadBalancer", "NodePort", "ClusterIP")


def _positive(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ValueError(f"{attribute.name} must be at least 1, got {value}")


@attrs.frozen(kw_only=True)
class DataPlaneSettings:
    """The data-plane Deployment the controller provisions per Gateway (deployment mode).

    `replicas` and `service_type` are defaults: a Gateway (or its GatewayClass)
    overrides them with the annotations in agc_controller/dataplane/manifests.py.
    """

    # the data-plane image: NGINX with the Lua and stream modules, and this package
    image: str = "ghcr.io/agc-controller/agc-dataplane:latest"
    image_pull_policy: str = "IfNotPresent"
    replicas: int = attrs.field(default=1, validator=_positive)
    service_type: str = attrs.field(
        default="LoadBalancer", validator=attrs.validators.in_(SERVICE_TYPES)
    )
    # the data-plane container's resources (a Kubernetes ResourceRequirements)
    resources: dict[str, Any] = attrs.field(factory=dict)
    # the agent's /healthz, /readyz and /metrics port in the pod
    health_port: int = 8081
