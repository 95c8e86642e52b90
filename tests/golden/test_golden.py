"""Golden tests: `cases/<kind>-<scenario>.in.yaml` → `.out.yaml`.

Each input holds Gateway API objects (plus Services, EndpointSlices, Secrets,
ConfigMaps, Namespaces). The output holds, for every GatewayClass and Gateway,
the ALB model and every status translation decides, with the provider result
fixed to "programmed at 192.0.2.1". Certificate material appears as a digest.
Run `pytest tests/golden --update-golden` to rewrite expectations, then read
the diff: it is the review.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml

from agc_controller.providers.base import ApplyResult
from agc_controller.status.model import GatewayAddress
from agc_controller.translate import (
    Snapshot,
    TranslateSettings,
    translate_gateway,
    translate_gateway_class,
)
from agc_controller.translate.settings import CORE_FEATURES

CASES = Path(__file__).parent / "cases"
SETTINGS = TranslateSettings(
    controller_name="agc-controller.io/gateway-controller",
    supported_features=CORE_FEATURES
    | {"HTTPRouteQueryParamMatching", "HTTPRouteMethodMatching", "BackendTLSPolicy"},
)
RESULT = ApplyResult(
    programmed=True,
    reason="Programmed",
    message="Programmed",
    addresses=(GatewayAddress(type="IPAddress", value="192.0.2.1"),),
)
_PEM_FIELDS = frozenset({"cert_pem", "key_pem", "ca_pem"})


def _plain(value: Any) -> Any:
    """attrs objects → plain data; PEM → a short digest; empty values dropped."""
    if attrs.has(type(value)):
        out = {}
        for field in attrs.fields(type(value)):
            item = getattr(value, field.name)
            if field.name in _PEM_FIELDS and isinstance(item, str):
                item = "sha256:" + hashlib.sha256(item.encode()).hexdigest()[:16]
            item = _plain(item)
            if item not in (None, (), [], {}):
                out[field.name] = item
        return out
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def render(snapshot: Snapshot) -> dict[str, Any]:
    out: dict[str, Any] = {"gatewayClasses": {}, "gateways": {}}
    for name in sorted(snapshot.gateway_classes):
        status = translate_gateway_class(snapshot, name, SETTINGS)
        if status is not None:
            out["gatewayClasses"][name] = _plain(status)
    for key in sorted(snapshot.gateways):
        translation = translate_gateway(snapshot, key, SETTINGS)
        result = RESULT if translation.load_balancer is not None else None
        out["gateways"][key] = {
            "status": _plain(translation.gateway_status(result)),
            "model": _plain(translation.load_balancer),
            "routes": _plain(translation.route_statuses),
            "policies": _plain(translation.policy_statuses),
        }
    return out


def _cases() -> list[Path]:
    return sorted(CASES.glob("*.in.yaml"))


def test_there_are_cases() -> None:
    assert len(_cases()) >= 1


@pytest.mark.parametrize("case", _cases(), ids=lambda p: p.name.removesuffix(".in.yaml"))
def test_golden(case: Path, request: pytest.FixtureRequest) -> None:
    objects = [doc for doc in yaml.safe_load_all(case.read_text()) if doc]
    got = render(Snapshot.from_objects(objects))
    out = case.with_name(case.name.replace(".in.yaml", ".out.yaml"))
    text = yaml.safe_dump(got, sort_keys=False, width=100)
    if request.config.getoption("--update-golden"):
        out.write_text(text)
    assert out.exists(), f"{out.name} is missing: run pytest tests/golden --update-golden"
    assert yaml.safe_load(out.read_text()) == got
