"""`agc-controller translate -o arm`: the Application Gateway body the azure provider would PUT.

Offline there is no Application Gateway to read, so the Gateways are merged
into an empty one of SKU tier WAF_v2 with a public and a private frontend IP
configuration (so that every frontend mode can be placed, and WAF policies
show: the ones of ours it would create first are under `firewallPolicies`), in the
subscription, resource group and name from the AGC_AZURE_* settings or the
Gateways' annotations (placeholders where neither says). Certificates appear
as digests, never as PFX bytes or keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from agc_controller.core import conditions as c
from agc_controller.core.keys import ObjectKey
from agc_controller.core.status import ApplyResult
from agc_controller.providers.azure.builder import build_children
from agc_controller.providers.azure.children import GatewayChildren
from agc_controller.providers.azure.frontends import frontend_ips, port_names
from agc_controller.providers.azure.merge import merge
from agc_controller.providers.azure.settings import AzureSettings, Placement, placement
from agc_controller.render.documents import ASSUMED_RESULT, Translations, pem_digest, to_yaml
from agc_controller.translate import GatewayTranslation
from agc_controller.translate.model import Certificate

_PLACEHOLDERS = AzureSettings(
    subscription_id="00000000-0000-0000-0000-000000000000",
    resource_group="resource-group",
    application_gateway="application-gateway",
)


def _settings() -> AzureSettings:
    env = AzureSettings.from_env()
    return AzureSettings(
        subscription_id=env.subscription_id or _PLACEHOLDERS.subscription_id,
        resource_group=env.resource_group or _PLACEHOLDERS.resource_group,
        application_gateway=env.application_gateway or _PLACEHOLDERS.application_gateway,
        frontend=env.frontend,
    )


def _empty_gateway(settings: AzureSettings) -> dict[str, Any]:
    gateway_id = (
        f"/subscriptions/{settings.subscription_id}/resourceGroups/{settings.resource_group}"
        f"/providers/Microsoft.Network/applicationGateways/{settings.application_gateway}"
    )
    group = f"/subscriptions/{settings.subscription_id}/resourceGroups/{settings.resource_group}"
    public_ip = f"{group}/providers/Microsoft.Network/publicIPAddresses/public-ip"
    network = f"{group}/providers/Microsoft.Network/virtualNetworks/network"
    return {
        "id": gateway_id,
        "name": settings.application_gateway,
        "location": "application-gateway-location",
        "properties": {
            "sku": {"name": "WAF_v2", "tier": "WAF_v2"},
            "frontendIPConfigurations": [
                {
                    "name": "public",
                    "id": f"{gateway_id}/frontendIPConfigurations/public",
                    "properties": {"publicIPAddress": {"id": public_ip}},
                },
                {
                    "name": "private",
                    "id": f"{gateway_id}/frontendIPConfigurations/private",
                    "properties": {
                        "privateIPAddress": "10.0.0.4",
                        "privateIPAllocationMethod": "Static",
                        "subnet": {"id": f"{network}/subnets/application-gateway"},
                    },
                },
            ],
        },
    }


def _digest_pfx(certificate: Certificate) -> tuple[str, str]:
    return pem_digest(certificate.cert_pem + certificate.key_pem), ""


@attrs.frozen
class _Offline:
    """The azure provider's work on an empty Application Gateway, offline."""

    # "namespace/name" -> "programmed", or why not, for every Gateway
    outcome: dict[str, str]
    # "namespace/name" -> the result the provider would report, for every Gateway
    # with a model
    results: dict[str, ApplyResult]
    # the Application Gateway body it would PUT
    body: dict[str, Any]
    # the WAF policies of ours it would create first: name -> resource body
    firewall_policies: dict[str, Any] = attrs.field(factory=dict)


def _offline(gateways: Mapping[str, GatewayTranslation]) -> _Offline:
    settings = _settings()
    current = _empty_gateway(settings)
    builds: dict[ObjectKey, GatewayChildren | None] = {}
    outcome: dict[str, str] = {}
    results: dict[str, ApplyResult] = {}
    for key, translation in gateways.items():
        model = translation.load_balancer
        if model is None:
            outcome[key] = "not programmed (see -o status)"
            continue
        where = placement(model, settings)
        if not isinstance(where, Placement):
            outcome[key] = where
            results[key] = ApplyResult(programmed=False, reason=c.R_INVALID, message=where)
            continue
        children = build_children(
            model,
            gateway_id=where.target.id,
            frontend_ips=frontend_ips(current),
            frontend_mode=where.frontend,
            ports=port_names(current),
            location=current["location"],
            sku_tier=current["properties"]["sku"]["tier"],
        )
        builds[model.gateway] = children
        outcome[key] = children.problem or "programmed"
    merged = merge(current, builds, encode_pfx=_digest_pfx)
    for gateway, built in builds.items():
        if built is None:
            continue
        key = gateway.namespaced_name
        problem = built.problem or merged.refused.get(gateway)
        if problem is None:
            results[key] = attrs.evolve(ASSUMED_RESULT, listener_problems=built.listener_problems)
            continue
        outcome[key] = problem
        results[key] = ApplyResult(
            programmed=False,
            reason=c.R_INVALID,
            message=f"Not programmed on Application Gateway {settings.application_gateway}: "
            f"{problem}",
        )
    policies = {
        name: body
        for gateway, built in builds.items()
        if built is not None and gateway not in merged.refused
        for name, body in built.firewall_policies.items()
    }
    return _Offline(outcome=outcome, results=results, body=merged.body, firewall_policies=policies)


def azure_results(gateways: Mapping[str, GatewayTranslation]) -> dict[str, ApplyResult]:
    """What the azure provider would report for each Gateway (translate's dry run)."""
    return _offline(gateways).results


def render_arm(translations: Translations) -> str:
    offline = _offline(translations.programmed_gateways())
    out: dict[str, Any] = {"gateways": offline.outcome, "applicationGateway": offline.body}
    if offline.firewall_policies:
        out["firewallPolicies"] = dict(sorted(offline.firewall_policies.items()))
    return to_yaml(out)
