"""Golden tests: `cases/<kind>-<scenario>.in.yaml` → `.out.yaml`.

Each input holds Gateway API objects (plus Services, EndpointSlices, Secrets,
ConfigMaps, Namespaces). The output holds, for every GatewayClass and Gateway,
the ALB model and every status translation decides, with the provider result
fixed to "programmed at 192.0.2.1". Certificate material appears as a digest.
Cases named `azure-<kind>-<scenario>` are translated with the azure provider's
settings (its capabilities), `local-<kind>-<scenario>` with the local NGINX data
plane's, every other case with every capability on.
Run `pytest tests/golden --update-golden` to rewrite expectations, then read
the diff: it is the review.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from agc_controller.factory import local_translate_settings
from agc_controller.providers.azure import azure_translate_settings
from agc_controller.render import ASSUMED_RESULT, render_all, translate_all
from agc_controller.translate import Snapshot, TranslateSettings
from agc_controller.translate.settings import CORE_FEATURES

CASES = Path(__file__).parent / "cases"
SETTINGS = TranslateSettings(
    controller_name="agc-controller.io/gateway-controller",
    supported_features=CORE_FEATURES
    | {"HTTPRouteQueryParamMatching", "HTTPRouteMethodMatching", "BackendTLSPolicy"},
)
AZURE_SETTINGS = azure_translate_settings(SETTINGS.controller_name)
LOCAL_SETTINGS = local_translate_settings(SETTINGS.controller_name)
# fixed so that the files show translation, not a provider: "programmed at 192.0.2.1"
RESULT = ASSUMED_RESULT


def render(snapshot: Snapshot, settings: TranslateSettings = SETTINGS) -> dict[str, Any]:
    return render_all(translate_all(snapshot, settings, result=RESULT))


def _cases() -> list[Path]:
    return sorted(CASES.glob("*.in.yaml"))


def test_there_are_cases() -> None:
    assert len(_cases()) >= 1


@pytest.mark.parametrize("case", _cases(), ids=lambda p: p.name.removesuffix(".in.yaml"))
def test_golden(case: Path, request: pytest.FixtureRequest) -> None:
    objects = [doc for doc in yaml.safe_load_all(case.read_text()) if doc]
    settings = {"azure": AZURE_SETTINGS, "local": LOCAL_SETTINGS}.get(
        case.name.split("-", 1)[0], SETTINGS
    )
    got = render(Snapshot.from_objects(objects), settings)
    out = case.with_name(case.name.replace(".in.yaml", ".out.yaml"))
    text = yaml.safe_dump(got, sort_keys=False, width=100)
    if request.config.getoption("--update-golden"):
        out.write_text(text)
    assert out.exists(), f"{out.name} is missing: run pytest tests/golden --update-golden"
    assert yaml.safe_load(out.read_text()) == got
