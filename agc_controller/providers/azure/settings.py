"""Azure provider settings, and which Application Gateway serves a Gateway.

Process-wide defaults come from `AzureSettings` (CLI flags / environment, see
`from_env`); annotations override them — on the GatewayClass for all its
Gateways, on a Gateway for that one — so one controller can drive several
Application Gateways (several Gateways may share one).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import attrs

from agc_controller.providers.azure import naming
from agc_controller.providers.azure.frontends import FRONTEND_MODES, FrontendMode
from agc_controller.translate.model import LoadBalancer

ANNOTATION_PREFIX = "azure.agc-controller.io/"
SUBSCRIPTION_ANNOTATION = ANNOTATION_PREFIX + "subscription-id"
RESOURCE_GROUP_ANNOTATION = ANNOTATION_PREFIX + "resource-group"
APPLICATION_GATEWAY_ANNOTATION = ANNOTATION_PREFIX + "application-gateway"
FRONTEND_ANNOTATION = ANNOTATION_PREFIX + "frontend"
# opt-in: the resource ID of the Azure DNS zone to keep the Gateway's records in (dns.py)
DNS_ZONE_ANNOTATION = ANNOTATION_PREFIX + "dns-zone"

PUBLIC_CLOUD = "https://management.azure.com"
CREDENTIALS = ("auto", "workload-identity", "managed-identity", "default")


@attrs.frozen(kw_only=True)
class AzureSettings:
    subscription_id: str = ""
    resource_group: str = ""
    application_gateway: str = ""
    # which frontend IP configurations a Gateway listens on, unless annotated
    frontend: FrontendMode = "public"
    # ARM endpoint: the public cloud, a sovereign cloud, or a test server
    arm_endpoint: str = PUBLIC_CLOUD
    # token scope; None: "<arm_endpoint>/.default", right for every Azure cloud
    credential_scope: str | None = None
    # a CA bundle (path) to verify ARM's TLS certificate with; True: the system store
    connection_verify: str | bool = True
    # seconds between long-running operation polls when ARM sends no Retry-After
    polling_interval_s: float = 10.0
    # transient failures (5xx, failed operations, connection errors) per PUT or GET
    retry_attempts: int = 5
    retry_min_s: float = 1.0
    retry_max_s: float = 30.0
    # 429 / another operation in progress: waits honouring Retry-After, at most this long each
    busy_attempts: int = 20
    max_retry_after_s: float = 120.0
    # 412 (someone else wrote the Application Gateway): re-read and retry this often
    conflict_attempts: int = 5
    # the longest an update's operation may take before the Gateway is tried again
    # (Application Gateway v2 updates take minutes; some take longer)
    operation_timeout_s: float = 1800.0
    # a body ARM refused is not PUT again, unchanged, for this long
    rejection_retry_s: float = 300.0
    # an Application Gateway with no update for this long is read and repaired anyway
    # (children of ours someone else changed or removed); 0: never
    resync_s: float = 300.0
    # how the controller signs in to Azure (credentials.py): auto, workload-identity,
    # managed-identity or default (DefaultAzureCredential's chain)
    credential: str = "auto"

    @property
    def scope(self) -> str:
        return self.credential_scope or f"{self.arm_endpoint.rstrip('/')}/.default"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AzureSettings:
        """Settings from `AGC_AZURE_*` variables (subscription also AZURE_SUBSCRIPTION_ID)."""
        env = os.environ if env is None else env
        frontend = env.get("AGC_AZURE_FRONTEND", "public")
        if frontend not in FRONTEND_MODES:
            raise ValueError(f"AGC_AZURE_FRONTEND must be one of {', '.join(FRONTEND_MODES)}")
        credential = env.get("AGC_AZURE_CREDENTIAL", "auto")
        if credential not in CREDENTIALS:
            raise ValueError(f"AGC_AZURE_CREDENTIAL must be one of {', '.join(CREDENTIALS)}")
        return cls(
            subscription_id=env.get("AGC_AZURE_SUBSCRIPTION_ID")
            or env.get("AZURE_SUBSCRIPTION_ID", ""),
            resource_group=env.get("AGC_AZURE_RESOURCE_GROUP", ""),
            application_gateway=env.get("AGC_AZURE_APPLICATION_GATEWAY", ""),
            frontend=frontend,
            arm_endpoint=env.get("AGC_AZURE_ARM_ENDPOINT", PUBLIC_CLOUD),
            connection_verify=env.get("AGC_AZURE_CA_BUNDLE") or True,
            credential=credential,
        )


@attrs.frozen
class Target:
    """One Application Gateway."""

    subscription_id: str
    resource_group: str
    name: str

    @property
    def id(self) -> str:
        return naming.application_gateway_id(self.subscription_id, self.resource_group, self.name)

    def __str__(self) -> str:
        return f"{self.resource_group}/{self.name}"


@attrs.frozen
class DnsZone:
    """One Azure DNS zone (Microsoft.Network/dnsZones)."""

    subscription_id: str
    resource_group: str
    # the zone's domain name: lower case, no trailing dot
    name: str

    def __str__(self) -> str:
        return f"{self.resource_group}/{self.name}"


# ARM matches the provider namespace and type case-insensitively; a zone name is a
# domain name of at least two labels (Azure DNS takes no single-label zones)
_DNS_ZONE_ID = re.compile(
    r"/subscriptions/(?P<sub>[0-9A-Fa-f-]{36})/resourceGroups/(?P<rg>[-\w.()]{1,90})"
    r"/providers/Microsoft\.Network/dnsZones/(?P<zone>[^/]+)/?",
    re.IGNORECASE,
)
_DNS_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")


def dns_zone(model: LoadBalancer) -> DnsZone | str | None:
    """The DNS zone the Gateway's annotations name (None: no DNS records wanted), or why
    the annotation is not a DNS zone's resource ID."""
    value = dict(model.annotations).get(DNS_ZONE_ANNOTATION)
    if value is None:
        return None
    m = _DNS_ZONE_ID.fullmatch(value.strip())
    if m is None:
        return (
            f"metadata.annotations[{DNS_ZONE_ANNOTATION!r}] {value[:160]!r} is not a DNS zone's "
            "resource ID (/subscriptions/<id>/resourceGroups/<group>/providers/"
            "Microsoft.Network/dnsZones/<zone>)"
        )
    zone = m["zone"].lower().rstrip(".")
    labels = zone.split(".")
    if len(zone) > 253 or len(labels) < 2 or not all(_DNS_LABEL.fullmatch(x) for x in labels):
        return (
            f"metadata.annotations[{DNS_ZONE_ANNOTATION!r}]: {m['zone'][:64]!r} is not a "
            "DNS zone name"
        )
    return DnsZone(subscription_id=m["sub"], resource_group=m["rg"], name=zone)


@attrs.frozen
class Placement:
    target: Target
    frontend: FrontendMode


def placement(model: LoadBalancer, settings: AzureSettings) -> Placement | str:
    """Where a Gateway goes (annotations over settings), or why it cannot go anywhere."""
    annotations = dict(model.annotations)
    target = Target(
        subscription_id=annotations.get(SUBSCRIPTION_ANNOTATION, settings.subscription_id),
        resource_group=annotations.get(RESOURCE_GROUP_ANNOTATION, settings.resource_group),
        name=annotations.get(APPLICATION_GATEWAY_ANNOTATION, settings.application_gateway),
    )
    for value, what, annotation in (
        (target.subscription_id, "subscription", SUBSCRIPTION_ANNOTATION),
        (target.resource_group, "resource group", RESOURCE_GROUP_ANNOTATION),
        (target.name, "Application Gateway", APPLICATION_GATEWAY_ANNOTATION),
    ):
        if not value:
            return (
                f"No Azure {what} is configured: set the controller's setting or the "
                f"{annotation} annotation"
            )
        if "/" in value or len(value) > 90:
            return f"metadata.annotations[{annotation!r}] {value[:64]!r} is not a valid name"
    frontend = annotations.get(FRONTEND_ANNOTATION, settings.frontend)
    if frontend not in FRONTEND_MODES:
        return (
            f"metadata.annotations[{FRONTEND_ANNOTATION!r}] {frontend[:32]!r} must be one of "
            + ", ".join(FRONTEND_MODES)
        )
    return Placement(target=target, frontend=frontend)
