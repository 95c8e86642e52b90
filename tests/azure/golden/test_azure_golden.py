"""Golden tests: Gateway API objects + an existing Application Gateway → the PUT body.

`<case>.in.yaml` holds Gateway API objects (translated with the azure
provider's settings) and one `kind: ApplicationGateway` document: the
Application Gateway as ARM returns it before the update. `<case>.out.yaml`
holds the merged body the provider would PUT, whether it would PUT at all,
what each Gateway would be told, and the WAF policies it would create first.
Certificates upload as a digest stand-in (real PFX bytes are salted at random).
Rewrite expectations with `pytest tests/azure/golden --update-azure-golden`,
then read the diff.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from agc_controller.core.keys import ObjectKey
from agc_controller.providers.azure import azure_translate_settings
from agc_controller.providers.azure.builder import build_children
from agc_controller.providers.azure.children import GatewayChildren
from agc_controller.providers.azure.frontends import frontend_ips, port_names
from agc_controller.providers.azure.merge import merge
from agc_controller.providers.azure.settings import AzureSettings, Placement, placement
from agc_controller.translate import Snapshot, translate_gateway
from agc_controller.translate.model import Certificate

CASES = Path(__file__).parent
SETTINGS = azure_translate_settings()
AZURE = AzureSettings(subscription_id="sub", resource_group="rg", application_gateway="appgw")


def fake_pfx(certificate: Certificate) -> tuple[str, str]:
    digest = hashlib.sha256((certificate.cert_pem + certificate.key_pem).encode()).hexdigest()
    return f"pfx:{digest[:16]}", "password"


def render(objects: list[dict[str, Any]]) -> dict[str, Any]:
    existing = next(o for o in objects if o.get("kind") == "ApplicationGateway")
    current = {k: v for k, v in existing.items() if k not in ("kind", "apiVersion")}
    snapshot = Snapshot.from_objects([o for o in objects if o is not existing])
    builds: dict[ObjectKey, GatewayChildren | None] = {}
    gateways: dict[str, Any] = {}
    for key in sorted(snapshot.gateways):
        model = translate_gateway(snapshot, key, SETTINGS).load_balancer
        if model is None:
            continue
        where = placement(model, AZURE)
        assert isinstance(where, Placement), where
        builds[model.gateway] = build_children(
            model,
            gateway_id=where.target.id,
            frontend_ips=frontend_ips(current),
            frontend_mode=where.frontend,
            ports=port_names(current),
            location=str(current.get("location", "")),
            sku_tier=str((current["properties"].get("sku") or {}).get("tier", "")),
        )
    result = merge(current, builds, encode_pfx=fake_pfx)
    policies = {
        name: body
        for children in builds.values()
        if children is not None
        for name, body in children.firewall_policies.items()
    }
    for gateway, children in builds.items():
        assert children is not None
        outcome: dict[str, Any] = {}
        if problem := children.problem or result.refused.get(gateway):
            outcome["problem"] = problem
        if children.listener_problems:
            outcome["listenerProblems"] = dict(children.listener_problems)
        gateways[f"{gateway.namespace}/{gateway.name}"] = outcome or "programmed"
    out = {"changed": result.changed, "gateways": gateways, "body": result.body}
    if policies:
        out["firewallPolicies"] = dict(sorted(policies.items()))
    return out


def _cases() -> list[Path]:
    return sorted(CASES.glob("*.in.yaml"))


def test_there_are_cases() -> None:
    assert len(_cases()) >= 1


@pytest.mark.parametrize("case", _cases(), ids=lambda p: p.name.removesuffix(".in.yaml"))
def test_golden(case: Path, request: pytest.FixtureRequest) -> None:
    objects = [doc for doc in yaml.safe_load_all(case.read_text()) if doc]
    got = render(objects)
    out = case.with_name(case.name.replace(".in.yaml", ".out.yaml"))
    if request.config.getoption("--update-azure-golden", default=False):
        out.write_text(yaml.safe_dump(got, sort_keys=False, width=100))
    assert out.exists(), f"{out.name} is missing: run pytest tests/azure --update-azure-golden"
    assert yaml.safe_load(out.read_text()) == got
