"""`agc-controller translate -o arm`: the Application Gateway body the azure provider would PUT.

Offline there is no Application Gateway to read, so the Gateways are merged
into an empty one with a single public frontend IP configuration, in the
subscription, resource group and name from the AGC_AZURE_* settings or the
Gateways' annotations (placeholders where neither says). Certificates appear
as digests, never as PFX bytes or keys.
"""

from __future__ import annotations

from typing import Any

from agc_controller.core.keys import ObjectKey
from agc_controller.providers.azure.builder import build_children
from agc_controller.providers.azure.children import GatewayChildren
from agc_controller.providers.azure.frontends import frontend_ips, port_names
from agc_controller.providers.azure.merge import merge
from agc_controller.providers.azure.settings import AzureSettings, Placement, placement
from agc_controller.render.documents import Translations, pem_digest, to_yaml
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
    public_ip = (
        f"/subscriptions/{settings.subscription_id}/resourceGroups/{settings.resource_group}"
        "/providers/Microsoft.Network/publicIPAddresses/public-ip"
    )
    return {
        "id": gateway_id,
        "name": settings.application_gateway,
        "properties": {
            "frontendIPConfigurations": [
                {
                    "name": "public",
                    "id": f"{gateway_id}/frontendIPConfigurations/public",
                    "properties": {"publicIPAddress": {"id": public_ip}},
                }
            ]
        },
    }


def _digest_pfx(certificate: Certificate) -> tuple[str, str]:
    return pem_digest(certificate.cert_pem + certificate.key_pem), ""


def render_arm(translations: Translations) -> str:
    settings = _settings()
    current = _empty_gateway(settings)
    builds: dict[ObjectKey, GatewayChildren | None] = {}
    outcome: dict[str, Any] = {}
    for key, translation in translations.gateways.items():
        model = translation.load_balancer
        if model is None:
            outcome[key] = "not programmed (see -o status)"
            continue
        where = placement(model, settings)
        if not isinstance(where, Placement):
            outcome[key] = where
            continue
        children = build_children(
            model,
            gateway_id=where.target.id,
            frontend_ips=frontend_ips(current),
            frontend_mode=where.frontend,
            ports=port_names(current),
        )
        builds[model.gateway] = children
        outcome[key] = children.problem or "programmed"
    result = merge(current, builds, encode_pfx=_digest_pfx)
    for gateway, problem in result.refused.items():
        outcome[f"{gateway.namespace}/{gateway.name}"] = problem
    return to_yaml({"gateways": outcome, "applicationGateway": result.body})
