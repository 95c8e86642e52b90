"""Process settings, from the command line and the environment (see cli.py)."""

from __future__ import annotations

import os
import socket

import attrs

from agc_controller.translate.settings import DEFAULT_CONTROLLER_NAME, DEFAULT_INGRESS_CONTROLLER


def _default_identity() -> str:
    # in a cluster the pod name (HOSTNAME) is unique among replicas
    return f"{os.environ.get('HOSTNAME') or socket.gethostname()}_{os.getpid()}"


@attrs.frozen(kw_only=True)
class Settings:
    # GatewayClasses naming this controllerName are ours
    controller_name: str = DEFAULT_CONTROLLER_NAME
    # IngressClasses naming this spec.controller are ours (and their Ingresses)
    ingress_controller: str = DEFAULT_INGRESS_CONTROLLER
    # concurrent reconciles (never two on one Gateway)
    workers: int = 4
    # off for a single local process; on for replicated deployments
    leader_election: bool = True
    lease_namespace: str = "default"
    lease_name: str = "agc-controller"
    # this replica's name in the Lease
    identity: str = attrs.field(factory=_default_identity)
    # JWKS documents AuthPolicies name by URL (controller/jwks.py): how often they are
    # fetched again, and the CA bundle their servers' certificates are checked against
    # (None: the system's)
    jwks_refresh_s: float = 300.0
    jwks_ca_file: str | None = None


# how the local provider runs its data planes (CLI --local-dataplane)
LOCAL_DATAPLANE_MODES = ("process", "deployment")
